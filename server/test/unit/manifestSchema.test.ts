/**
 * One manifest contract: the server's reader (model/manifest.ts) and the JSON Schema the exporter
 * validates against (training/ctm/manifest.schema.json) agree on every manifest shipped, and on every
 * mutation of one that the schema's own keywords describe.
 *
 * The mutations are derived from the schema, not written by hand: walking the schema beside a shipped
 * manifest, every field it describes gets each replacement its own subschema refuses (a wrong type, a
 * value below its minimum, outside its enum, against its pattern, an array too short or too long), each
 * required field is deleted, and an unknown field is added where the schema forbids them. The reader must
 * refuse every such document, with a ModelFolderError (never a crash). The mutations the schema accepts
 * (an optional field deleted, an unknown field where unknown fields are allowed) the reader must accept.
 * Changed values the schema accepts are not generated: the reader refuses many of them by its own rules
 * beyond the schema, mostly cross-references a schema cannot express (tensor names and shapes the graphs
 * must match, one label per class), and also empty strings, a graph shape not led by "batch", and an empty
 * output shape.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { Ajv2020, type AnySchemaObject, type ValidateFunction } from "ajv/dist/2020.js";
import { REPO } from "../../../tools/harness/testServer.ts";
import { ModelFolderError } from "../../src/model/jsonReader.ts";
import { MANIFEST_FILE, parseManifest } from "../../src/model/manifest.ts";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = (string | number)[];

const SCHEMA = JSON.parse(readFileSync(join(REPO, "training/ctm/manifest.schema.json"), "utf8")) as AnySchemaObject;
// A `maxItems` beside a `$ref` takes its type from the reference, which ajv's strictTypes lint does not follow.
const ajv = new Ajv2020({ allErrors: true, strictTypes: false });
const validateManifest = ajv.compile(SCHEMA);

/** Every manifest.json under the shipped models and the test fixtures. */
function shippedManifests(): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name === MANIFEST_FILE) found.push(path);
    }
  };
  walk(join(REPO, "models"));
  walk(join(REPO, "server/test/fixtures"));
  return found.sort();
}

/** "accepted", or the reader's message; anything but a ModelFolderError is a crash and fails the test. */
function readerVerdict(document: Json): string {
  try {
    parseManifest(document);
    return "accepted";
  } catch (error) {
    if (error instanceof ModelFolderError) return error.message;
    throw error;
  }
}

function schemaVerdict(document: Json): string {
  return validateManifest(document) ? "accepted" : ajv.errorsText(validateManifest.errors);
}

// ---------------------------------------------------------------- the schema, walked beside a document

const subschemas = new Map<AnySchemaObject, ValidateFunction>();
/** A validator of one subschema, with the root's $defs so that its references resolve. */
function validatorOf(schema: AnySchemaObject): ValidateFunction {
  const validate = subschemas.get(schema) ?? ajv.compile({ ...schema, $defs: SCHEMA.$defs });
  subschemas.set(schema, validate);
  return validate;
}

/** The schema with its `$ref` followed, the keywords beside the reference kept. */
function resolved(schema: AnySchemaObject): AnySchemaObject {
  if (typeof schema.$ref !== "string") return schema;
  const name = schema.$ref.replace("#/$defs/", "");
  const { $ref: _, ...beside } = schema;
  return { ...resolved(SCHEMA.$defs[name] as AnySchemaObject), ...beside };
}

interface Node {
  path: Path;
  schema: AnySchemaObject;
  value: Json;
}

/** Every field of `value` that `schema` describes (through properties, items and references), root first. */
function* walk(schema: AnySchemaObject, value: Json, path: Path = []): Generator<Node> {
  yield { path, schema, value };
  const plain = resolved(schema);
  if (Array.isArray(value)) {
    if (typeof plain.items === "object") {
      for (const [i, item] of value.entries()) yield* walk(plain.items as AnySchemaObject, item, [...path, i]);
    }
  } else if (value !== null && typeof value === "object") {
    const properties = (plain.properties ?? {}) as Record<string, AnySchemaObject>;
    for (const [key, item] of Object.entries(value)) {
      if (properties[key]) yield* walk(properties[key], item, [...path, key]);
    }
  }
}

/** The fields `schema` requires of `value`, with those its `if`/`then` adds when `value` meets the `if`. */
function requiredOf(schema: AnySchemaObject, value: Json): string[] {
  const plain = resolved(schema);
  const required = [...((plain.required as string[] | undefined) ?? [])];
  if (plain.if && plain.then && validatorOf(plain.if as AnySchemaObject)(value)) {
    required.push(...(((plain.then as AnySchemaObject).required as string[] | undefined) ?? []));
  }
  return required;
}

/** Replacements to try at a field: each JSON type, each side of the bounds the schema uses, and ones near `value`. */
function replacements(value: Json): Json[] {
  const near: Json[] = [];
  if (typeof value === "number") near.push(value - 1, value + 1, -value, value + 0.5);
  if (typeof value === "string") near.push(`${value}/x`, `../${value}`, value.toUpperCase(), `${value}.pt`);
  if (Array.isArray(value)) near.push(value.slice(1), [...value, ...value.slice(-1)], [...value, "batch"], [null]);
  return [null, true, 0, -1, 1.5, 2, 7, "", "x", "Bad Name", "float16", "NHWC", "batch", [], {}, ...near];
}

interface Mutation {
  what: string;
  document: Json;
}

const at = (path: Path) =>
  path
    .map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`))
    .join("")
    .slice(1) || "(document)";

function withChange(
  document: Json,
  path: Path,
  change: (parent: Record<string, Json> | Json[], key: string | number) => void,
): Json {
  const copy = structuredClone(document);
  let parent = copy as Record<string, Json> | Json[];
  for (const key of path.slice(0, -1)) parent = (parent as Record<string, Json>)[key] as Record<string, Json> | Json[];
  change(parent, path.at(-1) as string | number);
  return copy;
}
const replaced = (document: Json, path: Path, value: Json) =>
  withChange(document, path, (parent, key) => {
    (parent as Record<string, Json>)[key] = value;
  });
const deleted = (document: Json, path: Path) =>
  withChange(document, path, (parent, key) => {
    delete (parent as Record<string, Json>)[key];
  });

/** The mutations of `document` the schema refuses, and those it accepts, as described at the top. */
function mutations(document: Json): { refused: Mutation[]; accepted: Mutation[] } {
  const refused: Mutation[] = [];
  const accepted: Mutation[] = [];
  for (const { path, schema, value } of walk(SCHEMA, document)) {
    if (path.length > 0) {
      const validate = validatorOf(schema);
      for (const replacement of replacements(value)) {
        if (!validate(replacement))
          refused.push({
            what: `${at(path)} = ${JSON.stringify(replacement)}`,
            document: replaced(document, path, replacement),
          });
      }
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) continue;
    const required = requiredOf(schema, value);
    for (const key of Object.keys(value)) {
      const mutation = { what: `${at([...path, key])} deleted`, document: deleted(document, [...path, key]) };
      (required.includes(key) ? refused : accepted).push(mutation);
    }
    const unknown = {
      what: `${at([...path, "unexpected_field"])} added`,
      document: replaced(document, [...path, "unexpected_field"], 1),
    };
    (resolved(schema).additionalProperties === false ? refused : accepted).push(unknown);
  }
  return { refused, accepted };
}

// ---------------------------------------------------------------- the contract

describe("manifest.ts and manifest.schema.json", () => {
  const manifests = shippedManifests();

  it("finds the shipped manifests (the test reads what it thinks it reads)", () => {
    const names = manifests.map((file) => relative(REPO, file));
    for (const model of ["models/mnist-ctm/1", "models/maze-ctm/1", "server/test/fixtures/models/mnist-halting/1"]) {
      assert.ok(names.includes(join(model, MANIFEST_FILE)), `${model} among ${names.join(", ")}`);
    }
  });

  for (const file of manifests) {
    const name = relative(REPO, file);
    const document = JSON.parse(readFileSync(file, "utf8")) as Json;

    it(`${name} validates against the schema and loads with manifest.ts`, () => {
      assert.equal(schemaVerdict(document), "accepted", name);
      assert.equal(readerVerdict(document), "accepted", name);
    });

    it(`${name}: every mutation the schema refuses, manifest.ts refuses; every one it accepts, manifest.ts accepts`, () => {
      const { refused, accepted } = mutations(document);
      // Enough of each kind that a walk that stopped early (a reference not followed) would show.
      assert.ok(refused.length >= 200, `only ${refused.length} refused mutations`);
      assert.ok(accepted.length >= 20, `only ${accepted.length} accepted mutations`);
      const disagreements: string[] = [];
      for (const { what, document: mutated } of refused) {
        assert.notEqual(schemaVerdict(mutated), "accepted", `the schema accepts ${what}: the walk is wrong`);
        if (readerVerdict(mutated) === "accepted")
          disagreements.push(`manifest.ts accepts ${what}, the schema refuses it`);
      }
      for (const { what, document: mutated } of accepted) {
        assert.equal(schemaVerdict(mutated), "accepted", `the schema refuses ${what}: the walk is wrong`);
        const verdict = readerVerdict(mutated);
        if (verdict !== "accepted")
          disagreements.push(`manifest.ts refuses ${what} (${verdict}), the schema accepts it`);
      }
      assert.deepEqual(disagreements, [], `${disagreements.length} disagreement(s):\n${disagreements.join("\n")}`);
    });
  }
});
