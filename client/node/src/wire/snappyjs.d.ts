// Types of snappyjs (pure JavaScript snappy, block format), which ships none.
declare module "snappyjs" {
  /** Compresses input into one snappy block. */
  export function compress(input: Uint8Array): Uint8Array;
  /** Decompresses one snappy block; throws if it claims more than maxLength bytes or is corrupt. */
  export function uncompress(input: Uint8Array, maxLength?: number): Uint8Array;
  const SnappyJS: { compress: typeof compress; uncompress: typeof uncompress };
  export default SnappyJS;
}
