package httpserver

import (
	"net/http"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// writeStatus answers st as REST errors are answered: HTTP code and the
// JSON of the google.rpc.Status.
func writeStatus(w http.ResponseWriter, code int, st *status.Status) {
	body, err := protojson.Marshal(st.Proto())
	if err != nil {
		http.Error(w, st.Message(), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// notFound answers a path no route serves: 404 with the JSON of a
// google.rpc.Status UNIMPLEMENTED, the code an unknown method has on every
// transport (and the one gRPC and Connect clients make of a 404).
func notFound(w http.ResponseWriter, r *http.Request) {
	writeStatus(w, http.StatusNotFound, status.Newf(codes.Unimplemented, "no method at %s %s", r.Method, r.URL.Path))
}

// restRule is what the query check needs of a REST rule.
type restRule struct {
	input protoreflect.MessageDescriptor
}

// restRules returns the REST rules whose path is literal (no variable) and
// whose request fields may come from the query (body is not "*"), by
// "METHOD /path".
func restRules(services []protoreflect.ServiceDescriptor) map[string]restRule {
	out := map[string]restRule{}
	for _, sd := range services {
		methods := sd.Methods()
		for i := range methods.Len() {
			m := methods.Get(i)
			rule, ok := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
			if !ok || rule == nil {
				continue
			}
			for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
				method, path := rulePath(r)
				if path == "" || r.GetBody() == "*" || strings.ContainsAny(path, "{*:") {
					continue
				}
				out[method+" "+path] = restRule{input: m.Input()}
			}
		}
	}
	return out
}

// rulePath returns a rule's HTTP method and path.
func rulePath(r *annotations.HttpRule) (method, path string) {
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return http.MethodGet, p.Get
	case *annotations.HttpRule_Post:
		return http.MethodPost, p.Post
	case *annotations.HttpRule_Put:
		return http.MethodPut, p.Put
	case *annotations.HttpRule_Delete:
		return http.MethodDelete, p.Delete
	case *annotations.HttpRule_Patch:
		return http.MethodPatch, p.Patch
	case *annotations.HttpRule_Custom:
		return p.Custom.GetKind(), p.Custom.GetPath()
	}
	return "", ""
}

// restQuery refuses a REST request whose query names a field its request
// message lacks with INVALID_ARGUMENT (HTTP 400), as vanguard means to but
// answers UNKNOWN (HTTP 500). A field path is dot-separated field names,
// JSON or proto, as vanguard reads it.
func restQuery(next http.Handler, rules map[string]restRule) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rule, ok := rules[r.Method+" "+r.URL.Path]
		if !ok || r.URL.RawQuery == "" {
			next.ServeHTTP(w, r)
			return
		}
		for key := range r.URL.Query() {
			if !hasFieldPath(rule.input, key) {
				writeStatus(w, http.StatusBadRequest, status.Newf(codes.InvalidArgument,
					"unknown query parameter %q: %s has no such field", key, rule.input.FullName()))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// hasFieldPath reports whether path names a field of md, through singular
// message fields.
func hasFieldPath(md protoreflect.MessageDescriptor, path string) bool {
	parts := strings.Split(path, ".")
	for i, part := range parts {
		if md == nil {
			return false
		}
		f := md.Fields().ByJSONName(part)
		if f == nil {
			f = md.Fields().ByName(protoreflect.Name(part))
		}
		if f == nil {
			return false
		}
		if i < len(parts)-1 {
			if f.Cardinality() == protoreflect.Repeated {
				return false
			}
			md = f.Message()
		}
	}
	return true
}
