/**
 * The shape of the code, read from its source files as TypeScript reads their imports. Each folder
 * imports only itself, the product (server/src) and the shared harness (tools/harness), and the
 * product imports nothing outside itself (the image ships server/src alone). In server/src, no module
 * imports itself round a cycle: in a cycle, load order decides which of the modules sees the other
 * half-initialised. And the transport keeps to its folders (src/transport/README.md): the protocols
 * (ctmV1/, oip/, http/, health/) build on the shared grpc/ plumbing and not on each other, and grpc/
 * builds on none of them.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const REPO = fileURLToPath(new URL("../../..", import.meta.url));
const SRC = join(REPO, "server/src");
const TRANSPORT = join(SRC, "transport");
const SHARED = "grpc";
const PROTOCOLS = ["ctmV1", "oip", "http", "health"];
/**
 * The one crossing between protocols: the playground's HTTP API is ctm.v1 in JSON, answered through
 * ctm.v1's own decoding and encoding so that both ports answer alike, so http/ reads ctm.v1's codec.
 */
const CROSSINGS = new Set([
  "http -> ctmV1/ctmProtocol.ts",
  "http -> ctmV1/classifyDecoding.ts",
  "http -> ctmV1/classifyWeight.ts",
  "http -> ctmV1/responseEncoding.ts",
]);

type Graph = Map<string, string[]>;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** Each file's relative imports (static, re-exports, type-only and dynamic), as paths under SRC. */
function importGraph(files: string[]): Graph {
  const graph: Graph = new Map();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
    const local = importedFiles
      .map(({ fileName }) => fileName)
      .filter((name) => name.startsWith("."))
      .map((name) => resolve(dirname(file), name));
    graph.set(file, local);
  }
  return graph;
}

/** Every cycle a depth-first walk meets, each as the list of files round it (first file repeated). */
function cycles(graph: Graph): string[][] {
  const found: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (node: string) => {
    state.set(node, "open");
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === "open") found.push([...path.slice(path.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    path.pop();
    state.set(node, "done");
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return found;
}

/** The transport folder a file is in ("" for a file at the transport's top), or undefined outside it. */
function folderOf(file: string): string | undefined {
  const path = relative(TRANSPORT, file);
  if (path.startsWith("..")) return undefined;
  return path.includes("/") ? (path.split("/")[0] as string) : "";
}

const files = sourceFiles(SRC);
const graph = importGraph(files);
const named = (file: string) => relative(SRC, file);

describe("server/src's imports", () => {
  it("are read: the graph holds the imports every file has", () => {
    // A reader that found nothing would pass everything below.
    const edges = [...graph.values()].reduce((sum, list) => sum + list.length, 0);
    assert.ok(files.length > 50 && edges > files.length, `${files.length} files, ${edges} imports`);
    assert.ok(
      graph.get(join(SRC, "server.ts"))?.includes(join(SRC, "config.ts")),
      "server.ts's import of config.ts was not found",
    );
    assert.ok(
      graph.get(join(TRANSPORT, "ctmV1/ctmProtocol.ts"))?.includes(join(TRANSPORT, "grpc/requestDeserializers.ts")),
      "ctmV1/ctmProtocol.ts's import of grpc/requestDeserializers.ts was not found",
    );
  });

  it("finds a cycle where there is one", () => {
    const a = join(SRC, "a.ts");
    const b = join(SRC, "b.ts");
    const c = join(SRC, "c.ts");
    const found = cycles(
      new Map([
        [a, [b]],
        [b, [c]],
        [c, [a]],
      ]),
    );
    assert.deepEqual(found, [[a, b, c, a]]);
  });

  it("form no cycle", () => {
    assert.deepEqual(
      cycles(graph).map((cycle) => cycle.map(named).join(" -> ")),
      [],
    );
  });
});

describe("the transport's folders", () => {
  const transportFiles = files.filter((file) => folderOf(file) !== undefined);

  it("hold every transport file: one folder per protocol and grpc/ for what they share", () => {
    const misplaced = transportFiles.filter((file) => ![SHARED, ...PROTOCOLS].includes(folderOf(file) as string));
    assert.deepEqual(misplaced.map(named), []);
    for (const folder of [SHARED, ...PROTOCOLS]) {
      assert.ok(
        transportFiles.some((file) => folderOf(file) === folder),
        `transport/${folder}/ holds no file`,
      );
    }
  });

  it("import no sibling's files but grpc/'s (and ctm.v1's codec, for the playground); grpc/ imports none", () => {
    const crossings: string[] = [];
    for (const file of transportFiles) {
      const from = folderOf(file) as string;
      for (const target of graph.get(file) ?? []) {
        const to = folderOf(target);
        if (to === undefined || to === from || (to === SHARED && from !== SHARED)) continue;
        const crossing = `${from} -> ${relative(TRANSPORT, target)}`;
        if (!CROSSINGS.has(crossing)) crossings.push(`${named(file)} imports ${named(target)}`);
      }
    }
    assert.deepEqual(crossings, []);
  });
});

/**
 * The folders that hold code, most specific first. Any of them may import the product and the harness;
 * none imports another's files. The one exception: the tests import scripts/flags-table.ts to check that
 * docs/flags.md is what it writes.
 */
const AREAS = [
  "server/src",
  "server/bench",
  "server/test",
  "tools/harness",
  "tools/classify",
  "loadtest",
  "deploy",
  "scripts",
];
const SHARED_AREAS = ["server/src", "tools/harness"];
const AREA_CROSSINGS = new Set(["server/test -> scripts/flags-table.ts"]);

function areaOf(file: string): string | undefined {
  const path = relative(REPO, file);
  return AREAS.find((area) => path === area || path.startsWith(`${area}/`));
}

function codeFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.name === "node_modules" || entry.name === "fixtures") return [];
    if (entry.isDirectory()) return codeFiles(path);
    return /\.(ts|mjs)$/.test(entry.name) ? [path] : [];
  });
}

describe("the repository's folders", () => {
  const repoFiles = ["server", "tools", "loadtest", "deploy", "scripts"].flatMap((dir) => codeFiles(join(REPO, dir)));
  const repoGraph = importGraph(repoFiles);

  it("are all read, each into an area", () => {
    assert.deepEqual(
      repoFiles.filter((file) => areaOf(file) === undefined).map((file) => relative(REPO, file)),
      [],
    );
    for (const area of AREAS)
      assert.ok(
        repoFiles.some((file) => areaOf(file) === area),
        `${area} holds no file`,
      );
    // A reader that resolved no import across folders would find nothing sideways.
    assert.ok(
      repoGraph.get(join(REPO, "tools/harness/testServer.ts"))?.includes(join(SRC, "server.ts")),
      "tools/harness/testServer.ts's import of server/src/server.ts was not found",
    );
  });

  it("import only themselves, server/src and tools/harness; server/src imports only itself", () => {
    const sideways: string[] = [];
    for (const file of repoFiles) {
      const from = areaOf(file) as string;
      for (const target of repoGraph.get(file) ?? []) {
        const to = areaOf(target);
        if (to === from || (from !== "server/src" && to !== undefined && SHARED_AREAS.includes(to))) continue;
        if (AREA_CROSSINGS.has(`${from} -> ${relative(REPO, target)}`)) continue;
        sideways.push(`${relative(REPO, file)} imports ${relative(REPO, target)}`);
      }
    }
    assert.deepEqual(sideways, []);
  });
});
