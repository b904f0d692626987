// Package schema holds calc's schema with its doc comments: the
// FileDescriptorSet that buf builds from proto/ (scripts/generate.sh), with
// the source info that generated Go code leaves out. Server reflection
// answers from it, so that grpcurl describe and calc describe show the
// schema's comments.
package schema

import (
	_ "embed"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// descriptorSet is `buf build --as-file-descriptor-set` of proto/.
//
//go:embed calculator.binpb
var descriptorSet []byte

// Files returns the schema's files, source info included.
func Files() (*protoregistry.Files, error) { return files() }

var files = sync.OnceValues(func() (*protoregistry.Files, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(descriptorSet, &set); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	f, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return f, nil
})

// Resolver finds a file or descriptor in the schema, with its comments,
// and otherwise among the files linked into the program
// (protoregistry.GlobalFiles: health, reflection, the well-known types).
// It satisfies protodesc.Resolver, as reflection.ServerOptions wants.
type Resolver struct{ schema *protoregistry.Files }

// NewResolver returns a Resolver over the embedded schema.
func NewResolver() (*Resolver, error) {
	f, err := Files()
	if err != nil {
		return nil, err
	}
	return &Resolver{schema: f}, nil
}

// FindFileByPath looks up a file by its path, as protoregistry.Files does.
func (r *Resolver) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := r.schema.FindFileByPath(path); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

// FindDescriptorByName looks up a descriptor by its full name, as
// protoregistry.Files does.
func (r *Resolver) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.schema.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}
