/**
 * Headless Chromium (Debian's `chromium` package) driven over the Chrome DevTools Protocol, with no
 * npm dependency: --remote-debugging-pipe speaks CDP as NUL-terminated JSON on file descriptors 3
 * (to the browser) and 4 (from it), so no websocket client is needed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import type { Readable, Writable } from "node:stream";

const NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

/** The browser to run: $CHROMIUM_PATH, or the first of NAMES on $PATH; undefined when there is none. */
export function findChromium(): string | undefined {
  const candidates = process.env.CHROMIUM_PATH
    ? [process.env.CHROMIUM_PATH]
    : (process.env.PATH ?? "").split(delimiter).flatMap((dir) => NAMES.map((name) => join(dir, name)));
  return candidates.find((path) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

interface Pending {
  resolve: (result: Record<string, unknown>) => void;
  reject: (error: Error) => void;
  method: string;
}

type Listener = (params: Record<string, unknown>, sessionId: string | undefined) => void;

export class Chromium {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private buffered = Buffer.alloc(0);
  private stderr = "";

  private constructor(
    private readonly child: ChildProcess,
    private readonly profile: string,
  ) {
    const fromBrowser = child.stdio[4] as Readable;
    fromBrowser.on("data", (chunk: Buffer) => this.receive(chunk));
    child.stderr?.on("data", (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
    child.on("exit", (code) => {
      for (const p of this.pending.values())
        p.reject(new Error(`chromium exited (${code}) during ${p.method}: ${this.stderr}`));
      this.pending.clear();
    });
  }

  static launch(path: string): Chromium {
    const profile = mkdtempSync(join(tmpdir(), "ctm-chromium-"));
    const child = spawn(
      path,
      [
        "--headless=new",
        // As root (CI containers) Chromium refuses to start with its sandbox.
        ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
        "--remote-debugging-pipe",
        `--user-data-dir=${profile}`,
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        "--mute-audio",
        "about:blank",
      ],
      { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] },
    );
    return new Chromium(child, profile);
  }

  /** Sends one CDP command (to the browser, or to a page's session) and resolves with its result. */
  send(method: string, params: object = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    const toBrowser = this.child.stdio[3] as Writable;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId && { sessionId }) })}\0`);
    });
  }

  /** Resolves with the params of the next `method` event (of `sessionId`, if given). */
  once(method: string, sessionId?: string): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      const listener: Listener = (params, from) => {
        if (sessionId && from !== sessionId) return;
        this.listeners.get(method)?.delete(listener);
        resolve(params);
      };
      if (!this.listeners.has(method)) this.listeners.set(method, new Set());
      this.listeners.get(method)?.add(listener);
    });
  }

  /** A new tab, attached in flat mode: commands to it carry the returned session id. */
  async newPage(width: number, height: number): Promise<Page> {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this, sessionId as string);
    await page.send("Page.enable");
    await page.send("Runtime.enable");
    await page.send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false });
    return page;
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null) {
      const exited = new Promise((resolve) => this.child.once("exit", resolve));
      this.send("Browser.close").catch(() => {});
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.profile, { recursive: true, force: true });
  }

  private receive(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    for (let end = this.buffered.indexOf(0); end >= 0; end = this.buffered.indexOf(0)) {
      const message = JSON.parse(this.buffered.subarray(0, end).toString("utf8")) as {
        id?: number;
        result?: Record<string, unknown>;
        error?: { message: string };
        method?: string;
        params?: Record<string, unknown>;
        sessionId?: string;
      };
      this.buffered = this.buffered.subarray(end + 1);
      if (message.id !== undefined) {
        const pending = this.pending.get(message.id);
        this.pending.delete(message.id);
        if (message.error) pending?.reject(new Error(`${pending.method}: ${message.error.message}`));
        else pending?.resolve(message.result ?? {});
      } else if (message.method) {
        for (const listener of [...(this.listeners.get(message.method) ?? [])])
          listener(message.params ?? {}, message.sessionId);
      }
    }
  }
}

export class Page {
  constructor(
    private readonly browser: Chromium,
    readonly sessionId: string,
  ) {}

  send(method: string, params: object = {}): Promise<Record<string, unknown>> {
    return this.browser.send(method, params, this.sessionId);
  }

  async navigate(url: string): Promise<void> {
    const loaded = this.browser.once("Page.loadEventFired", this.sessionId);
    const { errorText } = await this.send("Page.navigate", { url });
    if (errorText) throw new Error(`navigating to ${url}: ${errorText}`);
    await loaded;
  }

  /** Evaluates `expression` in the page (awaiting a promise) and returns its JSON value. */
  async evaluate<T>(expression: string): Promise<T> {
    const { result, exceptionDetails } = (await this.send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    })) as { result: { value: T }; exceptionDetails?: { exception?: { description?: string }; text: string } };
    if (exceptionDetails)
      throw new Error(`in the page: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`);
    return result.value;
  }

  /** Polls `expression` until it is truthy; rejects after `timeoutMs` with `what`. */
  async waitFor<T>(expression: string, what: string, timeoutMs = 60_000): Promise<T> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const value = await this.evaluate<T>(expression);
      if (value) return value;
      if (Date.now() > until) throw new Error(`waited ${timeoutMs} ms for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** A mouse stroke through `points` (page coordinates): Chromium turns these into pointer events. */
  async stroke(points: readonly [number, number][]): Promise<void> {
    const [first, ...rest] = points;
    if (!first) return;
    const mouse = (type: string, [x, y]: [number, number]) =>
      this.send("Input.dispatchMouseEvent", { type, x, y, button: "left", buttons: 1, clickCount: 1 });
    await mouse("mousePressed", first);
    for (const point of rest) await mouse("mouseMoved", point);
    await mouse("mouseReleased", points[points.length - 1] as [number, number]);
  }

  /** The same stroke with a finger (touch events, as a phone sends them). */
  async touchStroke(points: readonly [number, number][]): Promise<void> {
    const [first, ...rest] = points;
    if (!first) return;
    await this.send("Emulation.setTouchEmulationEnabled", { enabled: true, maxTouchPoints: 1 });
    const touch = (type: string, at?: [number, number]) =>
      this.send("Input.dispatchTouchEvent", { type, touchPoints: at ? [{ x: at[0], y: at[1] }] : [] });
    await touch("touchStart", first);
    for (const point of rest) await touch("touchMove", point);
    await touch("touchEnd");
    await this.send("Emulation.setTouchEmulationEnabled", { enabled: false });
  }

  async screenshot(): Promise<Buffer> {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" });
    return Buffer.from(data as string, "base64");
  }
}
