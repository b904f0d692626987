// What the connect-es Transports over calc's protocol share, whichever
// carries the bytes (raw TCP, a WebSocket): method paths, decoding a unary
// response, and a streaming call's input pump and output decoding.

import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescMethodStreaming,
  type DescMethodUnary,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { Code, type StreamResponse, type UnaryResponse } from "@connectrpc/connect";
import { CalcError } from "../errors.js";
import type { CallStream } from "./stream.js";

/** What connect passes as call headers (HeadersInit, without needing the DOM lib). */
export type HeadersInit = ConstructorParameters<typeof Headers>[0];

/**
 * The metadata of a call from connect's headers, later inits overriding
 * earlier ones key by key; undefined when there is none.
 */
export function callMetadata(...inits: Array<HeadersInit | undefined>): Headers | undefined {
  let h: Headers | undefined;
  for (const init of inits) {
    if (init !== undefined) {
      new Headers(init).forEach((v, k) => (h ??= new Headers()).set(k, v));
    }
  }
  return h;
}

/** Returns the full method name of a method: "/pkg.Service/Method". */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** Decodes an output message; INTERNAL if it does not decode. */
function decode<O extends DescMessage>(schema: O, bytes: Uint8Array): MessageShape<O> {
  try {
    return fromBinary(schema, bytes);
  } catch (e) {
    throw new CalcError(`cannot decode ${schema.typeName}: ${(e as Error).message}`, Code.Internal, { cause: e });
  }
}

/** The UnaryResponse of a unary call that answered res. */
export function unaryResponse<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, res: Uint8Array): UnaryResponse<I, O> {
  return { stream: false, service: method.parent, method, header: new Headers(), message: decode(method.output, res), trailer: new Headers() };
}

/**
 * The StreamResponse of a streaming call s: it pumps input into s while the
 * caller reads (HALF_CLOSE at its end; it stops when the call ends and
 * cancels the call if the input fails) and decodes what s receives.
 */
export function streamResponse<I extends DescMessage, O extends DescMessage>(
  method: DescMethodStreaming<I, O>,
  s: CallStream,
  input: AsyncIterable<MessageInitShape<I>>,
): StreamResponse<I, O> {
  void (async () => {
    const it = input[Symbol.asyncIterator]();
    try {
      for (;;) {
        const r = await Promise.race([it.next(), s.status.then(() => undefined)]);
        if (r === undefined || s.done) {
          break;
        }
        if (r.done) {
          s.closeSend();
          return;
        }
        await s.send(toBinary(method.input, create(method.input, r.value)));
      }
      // The call ended first: release the input without waiting on it (a
      // generator suspended in next() would only return after that).
      Promise.resolve()
        .then(() => it.return?.())
        .catch(() => {});
    } catch {
      s.cancel();
    }
  })();

  async function* messages(): AsyncGenerator<MessageShape<O>> {
    for await (const bytes of s) {
      let m: MessageShape<O>;
      try {
        m = decode(method.output, bytes);
      } catch (e) {
        s.cancel();
        throw e;
      }
      yield m;
    }
  }

  return { stream: true, service: method.parent, method, header: new Headers(), message: messages(), trailer: new Headers() };
}

/** Encodes a request message. */
export function encodeRequest<I extends DescMessage>(method: DescMethod & { input: I }, input: MessageInitShape<I>): Uint8Array {
  return toBinary(method.input, create(method.input, input));
}
