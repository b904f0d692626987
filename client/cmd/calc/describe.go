package main

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// runDescribe is calc describe SYMBOL: it prints the symbol as proto
// source with the schema's doc comments, as grpcurl describe does.
func runDescribe(ctx context.Context, s *session, args []string) int {
	rc, err := newReflectionClient(ctx, s.conn)
	if err != nil {
		return s.fail(err)
	}
	defer rc.close()
	d, err := rc.find(args[0])
	if err != nil {
		return s.fail(err)
	}
	fmt.Fprint(s.stdout, describe(d))
	return exitOK
}

// describe returns d as proto source, with its doc comments, after a line
// that says what d is: "calculator.v1.Operator is an enum:".
func describe(d protoreflect.Descriptor) string {
	var p protoPrinter
	switch d := d.(type) {
	case protoreflect.ServiceDescriptor:
		p.service(d, 0)
	case protoreflect.MethodDescriptor:
		p.method(d, 0)
	case protoreflect.MessageDescriptor:
		p.message(d, 0)
	case protoreflect.FieldDescriptor:
		p.field(d, 0)
	case protoreflect.OneofDescriptor:
		p.oneof(d, 0)
	case protoreflect.EnumDescriptor:
		p.enum(d, 0)
	case protoreflect.EnumValueDescriptor:
		p.enumValue(d, 0)
	}
	return fmt.Sprintf("%s is %s:\n%s", d.FullName(), kindOf(d), p.b.String())
}

// kindOf names the kind of d with its article: "a service", "an enum".
func kindOf(d protoreflect.Descriptor) string {
	switch d.(type) {
	case protoreflect.ServiceDescriptor:
		return "a service"
	case protoreflect.MethodDescriptor:
		return "a method"
	case protoreflect.MessageDescriptor:
		return "a message"
	case protoreflect.FieldDescriptor:
		return "a field"
	case protoreflect.OneofDescriptor:
		return "a oneof"
	case protoreflect.EnumDescriptor:
		return "an enum"
	case protoreflect.EnumValueDescriptor:
		return "an enum value"
	}
	return "a descriptor"
}

// protoPrinter writes descriptors as compact proto source: each element
// after its leading comments, nested elements indented by two spaces,
// options and reserved ranges left out.
type protoPrinter struct {
	b strings.Builder
}

// line writes one line indented depth levels.
func (p *protoPrinter) line(depth int, format string, args ...any) {
	p.b.WriteString(strings.Repeat("  ", depth))
	fmt.Fprintf(&p.b, format, args...)
	p.b.WriteByte('\n')
}

// comments writes d's leading comments from the schema's source info, if
// the server sent any.
func (p *protoPrinter) comments(d protoreflect.Descriptor, depth int) {
	text := d.ParentFile().SourceLocations().ByDescriptor(d).LeadingComments
	if text == "" {
		return
	}
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		p.line(depth, "//%s", l)
	}
}

func (p *protoPrinter) service(s protoreflect.ServiceDescriptor, depth int) {
	p.comments(s, depth)
	p.line(depth, "service %s {", s.Name())
	for i := range s.Methods().Len() {
		p.method(s.Methods().Get(i), depth+1)
	}
	p.line(depth, "}")
}

func (p *protoPrinter) method(m protoreflect.MethodDescriptor, depth int) {
	stream := func(on bool) string {
		if on {
			return "stream "
		}
		return ""
	}
	p.comments(m, depth)
	p.line(depth, "rpc %s ( %s.%s ) returns ( %s.%s );", m.Name(),
		stream(m.IsStreamingClient()), m.Input().FullName(), stream(m.IsStreamingServer()), m.Output().FullName())
}

func (p *protoPrinter) message(m protoreflect.MessageDescriptor, depth int) {
	p.comments(m, depth)
	p.line(depth, "message %s {", m.Name())
	for i := range m.Fields().Len() {
		f := m.Fields().Get(i)
		if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() {
			if o.Fields().Get(0) == f {
				p.oneof(o, depth+1)
			}
			continue
		}
		p.field(f, depth+1)
	}
	for i := range m.Messages().Len() {
		if nested := m.Messages().Get(i); !nested.IsMapEntry() {
			p.message(nested, depth+1)
		}
	}
	for i := range m.Enums().Len() {
		p.enum(m.Enums().Get(i), depth+1)
	}
	p.line(depth, "}")
}

func (p *protoPrinter) oneof(o protoreflect.OneofDescriptor, depth int) {
	p.comments(o, depth)
	p.line(depth, "oneof %s {", o.Name())
	for i := range o.Fields().Len() {
		p.field(o.Fields().Get(i), depth+1)
	}
	p.line(depth, "}")
}

func (p *protoPrinter) field(f protoreflect.FieldDescriptor, depth int) {
	label := ""
	switch {
	case f.IsList():
		label = "repeated "
	case f.Cardinality() == protoreflect.Required:
		label = "required "
	case f.HasOptionalKeyword():
		label = "optional "
	}
	p.comments(f, depth)
	p.line(depth, "%s%s %s = %d;", label, fieldType(f), f.Name(), f.Number())
}

// fieldType is f's type as proto source writes it, message and enum types
// by their full names with a leading dot (grpcurl's style).
func fieldType(f protoreflect.FieldDescriptor) string {
	switch {
	case f.IsMap():
		return fmt.Sprintf("map<%s, %s>", fieldType(f.MapKey()), fieldType(f.MapValue()))
	case f.Message() != nil:
		return "." + string(f.Message().FullName())
	case f.Enum() != nil:
		return "." + string(f.Enum().FullName())
	}
	return f.Kind().String()
}

func (p *protoPrinter) enum(e protoreflect.EnumDescriptor, depth int) {
	p.comments(e, depth)
	p.line(depth, "enum %s {", e.Name())
	for i := range e.Values().Len() {
		p.enumValue(e.Values().Get(i), depth+1)
	}
	p.line(depth, "}")
}

func (p *protoPrinter) enumValue(v protoreflect.EnumValueDescriptor, depth int) {
	p.comments(v, depth)
	p.line(depth, "%s = %d;", v.Name(), v.Number())
}
