package main

import (
	"context"
	"io"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// reflectionClient learns a server's schema from its server reflection
// service (grpc.reflection.v1) over one stream, on either transport. It
// fetches the file that declares a symbol, and the files that file
// imports, into a registry of its own, with the schema's comments when
// the server sends them.
type reflectionClient struct {
	stream grpc.BidiStreamingClient[reflectionpb.ServerReflectionRequest, reflectionpb.ServerReflectionResponse]
	files  *protoregistry.Files
}

// newReflectionClient opens a reflection stream on conn that lasts as long
// as ctx.
func newReflectionClient(ctx context.Context, conn grpc.ClientConnInterface) (*reflectionClient, error) {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	return &reflectionClient{stream: stream, files: new(protoregistry.Files)}, nil
}

// close ends the reflection stream with a half-close and waits for the
// server to end it, so that the server sees (and logs) an OK call rather
// than one cancelled.
func (c *reflectionClient) close() {
	_ = c.stream.CloseSend()
	_, _ = c.stream.Recv()
}

// ask sends one request and returns its answer; an answer that is an
// error becomes a status error with the server's code and message.
func (c *reflectionClient) ask(req *reflectionpb.ServerReflectionRequest) (*reflectionpb.ServerReflectionResponse, error) {
	if err := c.stream.Send(req); err != nil && err != io.EOF {
		return nil, err
	} // on io.EOF the stream has ended: Recv says why
	resp, err := c.stream.Recv()
	if err == io.EOF {
		return nil, status.Error(codes.Unavailable, "server reflection: the server ended the stream")
	}
	if err != nil {
		return nil, err
	}
	if e := resp.GetErrorResponse(); e != nil {
		return nil, status.Errorf(codes.Code(e.GetErrorCode()), "server reflection: %s", e.GetErrorMessage())
	}
	return resp, nil
}

// services returns the full names of the services the server offers,
// sorted.
func (c *reflectionClient) services() ([]string, error) {
	resp, err := c.ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	sort.Strings(names)
	return names, nil
}

// find returns the descriptor of the symbol with the full name name: a
// service, method, message, field, oneof, enum or enum value. A name the
// server does not know is NOT_FOUND.
func (c *reflectionClient) find(name string) (protoreflect.Descriptor, error) {
	full := protoreflect.FullName(strings.TrimPrefix(name, "."))
	if !full.IsValid() {
		return nil, status.Errorf(codes.InvalidArgument, "%q is not a full name such as calculator.v1.CalculatorService", name)
	}
	if d, err := c.files.FindDescriptorByName(full); err == nil {
		return d, nil
	}
	resp, err := c.ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: string(full)},
	})
	if st := status.Convert(err); st.Code() == codes.NotFound {
		return nil, status.Errorf(codes.NotFound, "the server knows no symbol %s (%s)", full, st.Message())
	}
	if err != nil {
		return nil, err
	}
	fetched, err := decodeFiles(resp)
	if err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(fetched) {
		if err := c.register(name, fetched); err != nil {
			return nil, err
		}
	}
	d, err := c.files.FindDescriptorByName(full)
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "the server knows no symbol %s (server reflection sent no file that declares it)", full)
	}
	return d, nil
}

// register adds the file named path to the registry after the files it
// imports, taking each from fetched or else asking the server for it.
func (c *reflectionClient) register(path string, fetched map[string]*descriptorpb.FileDescriptorProto) error {
	if _, err := c.files.FindFileByPath(path); err == nil {
		return nil
	}
	fd, ok := fetched[path]
	if !ok {
		resp, err := c.ask(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_FileByFilename{FileByFilename: path},
		})
		if err != nil {
			return err
		}
		more, err := decodeFiles(resp)
		if err != nil {
			return err
		}
		for name, f := range more {
			fetched[name] = f
		}
		if fd, ok = fetched[path]; !ok {
			return status.Errorf(codes.NotFound, "server reflection: the server did not send %s", path)
		}
	}
	for _, dep := range fd.GetDependency() {
		if err := c.register(dep, fetched); err != nil {
			return err
		}
	}
	f, err := protodesc.NewFile(fd, c.files)
	if err != nil {
		return status.Errorf(codes.Internal, "server reflection: %s: %v", path, err)
	}
	if err := c.files.RegisterFile(f); err != nil {
		return status.Errorf(codes.Internal, "server reflection: %s: %v", path, err)
	}
	return nil
}

// decodeFiles returns the files of a file descriptor answer by path.
func decodeFiles(resp *reflectionpb.ServerReflectionResponse) (map[string]*descriptorpb.FileDescriptorProto, error) {
	files := map[string]*descriptorpb.FileDescriptorProto{}
	for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := new(descriptorpb.FileDescriptorProto)
		if err := proto.Unmarshal(b, fd); err != nil {
			return nil, status.Errorf(codes.Internal, "server reflection: decoding a file descriptor: %v", err)
		}
		files[fd.GetName()] = fd
	}
	return files, nil
}

// sortedKeys returns m's keys in order, so that files register in the
// same order on every run.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// method returns the method named name, written as grpcurl accepts it:
// package.Service/Method or package.Service.Method.
func (c *reflectionClient) method(name string) (protoreflect.MethodDescriptor, error) {
	full := name
	if i := strings.LastIndex(name, "/"); i >= 0 {
		full = name[:i] + "." + name[i+1:]
	}
	d, err := c.find(full)
	if err != nil {
		return nil, err
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s is %s, not a method", d.FullName(), kindOf(d))
	}
	return md, nil
}

// service returns the service named name.
func (c *reflectionClient) service(name string) (protoreflect.ServiceDescriptor, error) {
	d, err := c.find(name)
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s is %s, not a service", d.FullName(), kindOf(d))
	}
	return sd, nil
}
