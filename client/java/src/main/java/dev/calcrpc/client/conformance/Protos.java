package dev.calcrpc.client.conformance;

import com.google.gson.JsonElement;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.protobuf.util.JsonFormat;
import dev.calcrpc.calculator.v1.CalculatorServiceGrpc;
import io.grpc.MethodDescriptor;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServiceDescriptor;
import java.util.HashMap;
import java.util.Map;

/** The service's methods and message types by name, from the generated code's descriptors. */
final class Protos {
  private Protos() {}

  /** A method's full wire name ("/pkg.Service/Method") and its request and response prototypes. */
  record MethodInfo(String wireName, MethodDescriptor.MethodType type, Message request, Message response) {}

  static final Map<String, MethodInfo> METHODS_BY_WIRE_NAME = new HashMap<>();
  static final Map<String, MethodInfo> METHODS_BY_SHORT_NAME = new HashMap<>();
  static final Map<String, Message> TYPES = new HashMap<>();

  static {
    ServiceDescriptor sd = CalculatorServiceGrpc.getServiceDescriptor();
    for (MethodDescriptor<?, ?> m : sd.getMethods()) {
      Message req = prototype(m.getRequestMarshaller());
      Message resp = prototype(m.getResponseMarshaller());
      MethodInfo info = new MethodInfo("/" + m.getFullMethodName(), m.getType(), req, resp);
      METHODS_BY_WIRE_NAME.put(info.wireName(), info);
      METHODS_BY_SHORT_NAME.put(m.getBareMethodName(), info);
      TYPES.put(req.getDescriptorForType().getFullName(), req);
      TYPES.put(resp.getDescriptorForType().getFullName(), resp);
    }
  }

  private static Message prototype(MethodDescriptor.Marshaller<?> m) {
    if (m instanceof MethodDescriptor.PrototypeMarshaller<?> pm && pm.getMessagePrototype() instanceof Message msg) {
      return msg;
    }
    throw new IllegalStateException("not a protobuf marshaller: " + m);
  }

  /** Parses protobuf JSON into a message of the prototype's type. */
  @SuppressWarnings("unchecked")
  static <T extends Message> T fromJson(T prototype, JsonElement json) throws InvalidProtocolBufferException {
    Message.Builder b = prototype.newBuilderForType();
    JsonFormat.parser().merge(json.toString(), b);
    return (T) b.build();
  }

  private static final JsonFormat.Printer PRINTER = JsonFormat.printer()
      .usingTypeRegistry(JsonFormat.TypeRegistry.newBuilder()
          .add(com.google.rpc.BadRequest.getDescriptor())
          .add(com.google.rpc.ErrorInfo.getDescriptor())
          .build())
      .omittingInsignificantWhitespace();

  static String toJson(Message m) {
    try {
      return PRINTER.print(m);
    } catch (InvalidProtocolBufferException e) {
      return m.toString();
    }
  }
}
