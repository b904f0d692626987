// Real calcd processes for the live tests: built from this repository with
// go (once per test process, into a temporary directory), started on
// 127.0.0.1 with the addresses read from calcd's JSON log, killed by the PID
// they were started with. Development certificates come from tools/devcerts.

import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository's root (this file is client/node/dist/test/live/calcd.js). */
export const repoRoot = resolve(here, "../../../../..");

const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), "calc-node-live-"));
const started = new Set<ChildProcess>();
process.on("exit", () => {
  for (const p of started) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill("SIGKILL");
    }
  }
  rmSync(work, { recursive: true, force: true });
});

let built: Promise<{ calcd: string; devcerts: string }> | undefined;

/** Builds calcd and devcerts (go build; the Go build cache makes it quick after the first time). */
export function buildTools(): Promise<{ calcd: string; devcerts: string }> {
  built ??= (async () => {
    const bin = join(work, "bin");
    await run("go", ["build", "-o", bin + "/", "./server/cmd/calcd", "./tools/devcerts"], { cwd: repoRoot, timeout: 300_000 });
    return { calcd: join(bin, "calcd"), devcerts: join(bin, "devcerts") };
  })();
  return built;
}

/** A set of development certificates: a CA, a server certificate for localhost/127.0.0.1/::1, a client certificate. */
export interface Certs {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

let certCount = 0;

/** Makes a fresh CA and certificates (each call a different CA). */
export async function makeCerts(): Promise<Certs> {
  const { devcerts } = await buildTools();
  const dir = join(work, `certs${++certCount}`);
  await run(devcerts, ["-out", dir], { timeout: 60_000 });
  return {
    dir,
    ca: join(dir, "ca.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server-key.pem"),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client-key.pem"),
  };
}

/** Writes a token policy file allowing token every method; returns its path. */
export function tokenPolicy(token: string): string {
  const file = join(work, `policy-${randomBytes(4).toString("hex")}.json`);
  const digest = createHash("sha256").update(token).digest("hex");
  writeFileSync(file, JSON.stringify({ principals: [{ name: "node-test", token_sha256: digest, methods: ["*"] }] }));
  return file;
}

/** A running calcd. */
export class Calcd {
  private exited: Promise<void>;

  private constructor(
    readonly proc: ChildProcess,
    readonly tcp: string,
    readonly grpc: string,
    readonly admin: string | undefined,
  ) {
    this.exited = new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once("exit", () => r())));
  }

  /**
   * Starts calcd with args (--tcp-addr and --grpc-addr default to
   * 127.0.0.1:0) and resolves once it logs where it listens (10 s at most).
   */
  static async start(args: string[] = []): Promise<Calcd> {
    const { calcd } = await buildTools();
    const all = [...args];
    if (!all.includes("--tcp-addr")) {
      all.push("--tcp-addr", "127.0.0.1:0");
    }
    if (!all.includes("--grpc-addr")) {
      all.push("--grpc-addr", "127.0.0.1:0");
    }
    const wantAdmin = all.includes("--admin-addr");
    const proc = spawn(calcd, all, { stdio: ["ignore", "ignore", "pipe"] });
    started.add(proc);
    proc.once("exit", () => started.delete(proc));
    const addrs: Record<string, string> = {};
    let log = "";
    return await new Promise<Calcd>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`calcd did not log its addresses within 10 s:\n${log}`)), 10_000);
      const fail = (e: Error) => {
        clearTimeout(timer);
        proc.kill("SIGKILL");
        reject(e);
      };
      let buf = "";
      proc.stderr!.setEncoding("utf8");
      proc.stderr!.on("data", (chunk: string) => {
        log += chunk;
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          try {
            const rec = JSON.parse(line) as { msg?: string; transport?: string; addr?: string };
            if (rec.msg === "listening" && rec.transport && rec.addr) {
              addrs[rec.transport] = rec.addr;
            }
          } catch {
            // not JSON: keep it in the log only
          }
        }
        if (addrs.tcp && addrs.grpc && (!wantAdmin || addrs.admin)) {
          clearTimeout(timer);
          proc.off("exit", onExit);
          proc.stderr!.removeAllListeners("data");
          proc.stderr!.resume(); // keep draining its log
          resolve(new Calcd(proc, addrs.tcp, addrs.grpc, addrs.admin));
        }
      });
      const onExit = (code: number | null, sig: string | null) => fail(new Error(`calcd exited (${code ?? sig}) before listening:\n${log}`));
      proc.once("exit", onExit);
    });
  }

  /** Sends sig (SIGKILL by default) to the process this started, and waits for it to exit. */
  async kill(sig: NodeJS.Signals = "SIGKILL"): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill(sig);
    }
    await this.exited;
  }

  /** The sum of grpc_server_handled_total for one method on one transport, from the admin port. */
  async handled(method: string, transport: "tcp" | "grpc" = "tcp"): Promise<number> {
    if (!this.admin) {
      throw new Error("calcd was started without --admin-addr");
    }
    const res = await fetch(`http://${this.admin}/metrics`, { signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    let sum = 0;
    for (const line of text.split("\n")) {
      if (line.startsWith("grpc_server_handled_total{") && line.includes(`grpc_method="${method}"`) && line.includes(`transport="${transport}"`)) {
        sum += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
    }
    return sum;
  }
}
