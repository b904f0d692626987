package dev.calcrpc.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The rich error of a failed call, the same for both transports: the gRPC code, the message and
 * the google.rpc details calc sends (BadRequest, ErrorInfo). Works on any StatusRuntimeException
 * or StatusException from grpc-java stubs and on the raw TCP client's TcpCallException.
 *
 * @param code the status code
 * @param message the status message
 * @param status the whole google.rpc.Status (details as Any)
 * @param badRequest the first google.rpc.BadRequest detail, if any
 * @param errorInfo the first google.rpc.ErrorInfo detail, if any
 */
public record ErrorDetails(
    Status.Code code, String message, com.google.rpc.Status status, Optional<BadRequest> badRequest,
    Optional<ErrorInfo> errorInfo) {

  /** Extracts the details of a call's failure. */
  public static ErrorDetails of(Throwable t) {
    com.google.rpc.Status sp = StatusProto.fromThrowable(t);
    Status st = Status.fromThrowable(t);
    if (sp == null) {
      sp = com.google.rpc.Status.newBuilder()
          .setCode(st.getCode().value())
          .setMessage(st.getDescription() == null ? "" : st.getDescription())
          .build();
    }
    return of(sp);
  }

  /** Decodes the details of a google.rpc.Status. */
  public static ErrorDetails of(com.google.rpc.Status sp) {
    BadRequest br = null;
    ErrorInfo ei = null;
    for (Any a : sp.getDetailsList()) {
      try {
        if (br == null && a.is(BadRequest.class)) {
          br = a.unpack(BadRequest.class);
        } else if (ei == null && a.is(ErrorInfo.class)) {
          ei = a.unpack(ErrorInfo.class);
        }
      } catch (InvalidProtocolBufferException e) {
        // an undecodable detail is left out
      }
    }
    return new ErrorDetails(Status.fromCodeValue(sp.getCode()).getCode(), sp.getMessage(), sp,
        Optional.ofNullable(br), Optional.ofNullable(ei));
  }

  /** The fields named by the BadRequest's field violations. */
  public List<String> violationFields() {
    List<String> out = new ArrayList<>();
    badRequest.ifPresent(b -> b.getFieldViolationsList().forEach(v -> out.add(v.getField())));
    return out;
  }

  /** The ErrorInfo reason, or "" without one. */
  public String reason() {
    return errorInfo.map(ErrorInfo::getReason).orElse("");
  }

  /** An ErrorInfo metadata value, or null. */
  public String errorMetadata(String key) {
    return errorInfo.map(e -> e.getMetadataMap().get(key)).orElse(null);
  }

  /** The type URLs of all details, in order. */
  public List<String> detailTypes() {
    List<String> out = new ArrayList<>();
    for (Any a : status.getDetailsList()) {
      out.add(a.getTypeUrl());
    }
    return out;
  }

  @Override
  public String toString() {
    StringBuilder b = new StringBuilder(code.name()).append(" \"").append(message).append('"');
    errorInfo.ifPresent(e -> b.append(" reason=").append(e.getReason()).append(" metadata=").append(e.getMetadataMap()));
    if (badRequest.isPresent()) {
      b.append(" fields=").append(violationFields());
    }
    return b.toString();
  }
}
