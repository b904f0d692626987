package dev.calcrpc.client.conformance;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import dev.calcrpc.client.wire.Frame;
import dev.calcrpc.client.wire.FrameReader;
import dev.calcrpc.client.wire.RequestHeader;
import dev.calcrpc.client.wire.Settings;
import dev.calcrpc.client.wire.Wire;
import dev.calcrpc.client.wire.WireException;
import io.grpc.MethodDescriptor;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Decodes one vector of testdata/wire/vectors.json with the client library's frame decoder and
 * checks it as the file's "about" says. Returns null when it passes, else why it failed.
 */
final class VectorChecker {
  private VectorChecker() {}

  static String check(JsonObject v) {
    byte[] raw = HexFormat.of().parseHex(str(v, "hex", ""));
    String wantError = str(v, "error", "");
    if (v.has("preface") && v.get("preface").getAsBoolean()) {
      try {
        int version = Wire.readPreface(new ByteArrayInputStream(raw));
        if (!wantError.isEmpty()) {
          return "preface read as version " + version + ", want error " + wantError;
        }
        int want = v.get("version").getAsInt();
        return version == want ? null : "preface version " + version + ", want " + want;
      } catch (WireException e) {
        return e.error().name().equals(wantError) ? null : "preface error " + e.getMessage() + ", want " + (wantError.isEmpty() ? "none" : wantError);
      } catch (IOException e) {
        return "preface: " + e;
      }
    }
    int maxFrame = Wire.DEFAULT_MAX_FRAME_SIZE;
    int maxMessage = Wire.DEFAULT_MAX_MESSAGE_SIZE;
    if (v.has("limits")) {
      JsonObject l = v.getAsJsonObject("limits");
      maxFrame = l.has("max_frame_size") ? l.get("max_frame_size").getAsInt() : maxFrame;
      maxMessage = l.has("max_message_size") ? l.get("max_message_size").getAsInt() : maxMessage;
    }
    JsonArray frames = v.has("frames") ? v.getAsJsonArray("frames") : new JsonArray();
    FrameReader r = new FrameReader(new ByteArrayInputStream(raw), maxFrame);
    Map<Integer, String> bound = new HashMap<>();
    for (int i = 0; ; i++) {
      Frame f;
      try {
        f = r.read();
      } catch (WireException e) {
        if (!wantError.isEmpty() && i == frames.size() && e.error().name().equals(wantError)) {
          return null;
        }
        return "frame " + i + ": error " + e.getMessage() + "; want " + frames.size() + " frames then " + (wantError.isEmpty() ? "end of input" : wantError);
      } catch (IOException e) {
        return "frame " + i + ": " + e;
      }
      if (f == null) {
        if (wantError.isEmpty() && i == frames.size()) {
          return null;
        }
        return "end of input after " + i + " frames; want " + frames.size() + " frames then " + (wantError.isEmpty() ? "end of input" : wantError);
      }
      if (i >= frames.size()) {
        return "more than " + frames.size() + " frames: got " + f;
      }
      String why = checkFrame(frames.get(i).getAsJsonObject(), f, maxMessage, bound);
      if (why != null) {
        return "frame " + i + " (" + f.kind() + "): " + why;
      }
    }
  }

  private static String checkFrame(JsonObject want, Frame f, int maxMessage, Map<Integer, String> bound) {
    if (!f.kind().name().equals(str(want, "kind", "")) || f.flags() != want.get("flags").getAsInt() || f.id() != want.get("id").getAsLong()) {
      return "got " + f.kind() + " flags " + f.flags() + " id " + f.id() + ", want " + str(want, "kind", "") + " " + want.get("flags") + " " + want.get("id");
    }
    int msgOffset = 0;
    String msgType = "";
    switch (f.kind()) {
      case REQUEST -> {
        RequestHeader.Parsed p;
        try {
          p = RequestHeader.parse(f.flags(), f.payload());
        } catch (WireException e) {
          return "request header: " + e.getMessage();
        }
        RequestHeader h = p.header();
        if (h.methodName() != null) {
          bound.put(h.methodRef(), h.methodName());
        }
        long wantRef = want.has("method_ref") ? want.get("method_ref").getAsLong() : 0;
        String wantName = want.has("method_name") ? want.get("method_name").getAsString() : null;
        if (h.methodRef() != wantRef || !Objects.equals(h.methodName(), wantName)) {
          return "method " + h.methodRef() + " " + h.methodName() + ", want " + wantRef + " " + wantName;
        }
        Long wantTimeout = want.has("timeout_us") ? want.get("timeout_us").getAsLong() : null;
        if (!Objects.equals(h.timeoutMicros(), wantTimeout)) {
          return "timeout " + h.timeoutMicros() + " us, want " + wantTimeout;
        }
        List<String> got = new ArrayList<>();
        for (RequestHeader.Entry e : h.metadata()) {
          got.add(e.key() + "=" + HexFormat.of().formatHex(e.value()));
        }
        List<String> exp = new ArrayList<>();
        if (want.has("metadata")) {
          for (JsonElement pair : want.getAsJsonArray("metadata")) {
            JsonArray a = pair.getAsJsonArray();
            exp.add(a.get(0).getAsString() + "=" + HexFormat.of().formatHex(a.get(1).getAsString().getBytes(StandardCharsets.UTF_8)));
          }
        }
        if (!got.equals(exp)) {
          return "metadata " + got + ", want " + exp;
        }
        msgOffset = p.messageOffset();
        Protos.MethodInfo m = Protos.METHODS_BY_WIRE_NAME.get(bound.get(h.methodRef()));
        if (m != null && m.type() == MethodDescriptor.MethodType.UNARY) {
          msgType = m.request().getDescriptorForType().getFullName();
        }
      }
      case MESSAGE, RESPONSE -> msgType = str(want, "message_type", ""); // the direction, known to a real peer, decides the type
      case STATUS -> {
        try {
          return checkStatus(Wire.parseStatus(f.payload(), 0, f.payload().length), want.getAsJsonObject("status"));
        } catch (WireException e) {
          return e.getMessage();
        }
      }
      case GOAWAY -> {
        try {
          Wire.GoAway ga = Wire.parseGoAway(f.payload());
          if (!want.has("last_id") || ga.lastId() != want.get("last_id").getAsLong()) {
            return "last id " + ga.lastId() + ", want " + want.get("last_id");
          }
          return checkStatus(ga.status(), want.getAsJsonObject("status"));
        } catch (WireException e) {
          return e.getMessage();
        }
      }
      case SETTINGS -> {
        try {
          Map<String, Long> got = Settings.parse(f.payload()).byName();
          JsonObject ws = want.has("settings") ? want.getAsJsonObject("settings") : new JsonObject();
          for (Map.Entry<String, JsonElement> e : ws.entrySet()) {
            if (!Objects.equals(got.get(e.getKey()), e.getValue().getAsLong())) {
              return "settings " + got + ", want " + ws;
            }
          }
          return null;
        } catch (WireException e) {
          return e.getMessage();
        }
      }
      case PING, PONG -> {
        String hex = HexFormat.of().formatHex(f.payload());
        return hex.equals(str(want, "ping_hex", "")) ? null : "payload " + hex + ", want " + str(want, "ping_hex", "");
      }
      default -> {
        return f.payload().length == 0 ? null : f.kind() + " payload " + HexFormat.of().formatHex(f.payload()) + ", want empty";
      }
    }
    String wantType = str(want, "message_type", "");
    if (!msgType.equals(wantType)) {
      return "message type \"" + msgType + "\", want \"" + wantType + "\"";
    }
    String wantMsgError = str(want, "message_error", "");
    byte[] msg;
    try {
      msg = Wire.decodeMessage(f.payload(), msgOffset, f.payload().length - msgOffset, f.has(Wire.FLAG_COMPRESSED), maxMessage);
    } catch (WireException e) {
      return e.error().name().equals(wantMsgError) ? null : "message error " + e.getMessage() + ", want " + (wantMsgError.isEmpty() ? "none" : wantMsgError);
    }
    if (msgType.isEmpty()) {
      if (msg.length != 0 || !wantMsgError.isEmpty()) {
        return "message " + HexFormat.of().formatHex(msg) + " for an unknown method; want error \"" + wantMsgError + "\"";
      }
      return null;
    }
    Message prototype = Protos.TYPES.get(msgType);
    if (prototype == null) {
      return "unknown message type " + msgType;
    }
    Message got;
    try {
      got = prototype.getParserForType().parseFrom(msg);
    } catch (InvalidProtocolBufferException e) {
      return wantMsgError.equals("INVALID_PROTOBUF") ? null : "unmarshal: " + e.getMessage() + ", want message error \"" + wantMsgError + "\"";
    }
    if (!wantMsgError.isEmpty()) {
      return "message decoded as " + Protos.toJson(got) + ", want error " + wantMsgError;
    }
    if (!want.has("message")) {
      return "vector has no message to compare with " + Protos.toJson(got);
    }
    Message exp;
    try {
      exp = Protos.fromJson(prototype, want.get("message"));
    } catch (InvalidProtocolBufferException e) {
      return "vector message does not parse: " + e.getMessage();
    }
    return got.equals(exp) ? null : "message " + Protos.toJson(got) + ", want " + Protos.toJson(exp);
  }

  private static String checkStatus(com.google.rpc.Status st, JsonObject want) {
    int code = want != null && want.has("code") ? want.get("code").getAsInt() : 0;
    String message = want != null ? str(want, "message", "") : "";
    List<String> types = new ArrayList<>();
    if (want != null && want.has("detail_types")) {
      want.getAsJsonArray("detail_types").forEach(t -> types.add(t.getAsString()));
    }
    List<String> got = st.getDetailsList().stream().map(Any::getTypeUrl).toList();
    if (st.getCode() != code || !st.getMessage().equals(message) || !got.equals(types)) {
      return "status code " + st.getCode() + " \"" + st.getMessage() + "\" details " + got + ", want " + code + " \"" + message + "\" " + types;
    }
    return null;
  }

  static String str(JsonObject o, String key, String dflt) {
    return o.has(key) && !o.get(key).isJsonNull() ? o.get(key).getAsString() : dflt;
  }
}
