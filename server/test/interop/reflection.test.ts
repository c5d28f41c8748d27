/**
 * Server reflection, checked the way tools built on protoc's descriptors read it (grpcurl, ghz,
 * grpc_health_probe, Postman, grpcio's reflection client): every service the server lists is described
 * by files whose map entries are named "<Field>Entry", whose type names are fully qualified and resolve
 * within the file and its dependencies, whose fields carry protoc's JSON names, whose proto3 `optional`
 * fields keep their flag and whose options survive. protobuf-go refuses a file that breaks the first rule, which made
 * grpc.health.v1.Health unusable from grpcurl. The descriptors are decoded here with protobufjs's
 * descriptor codec, independently of the server's own code; grpcurl itself runs too when it is installed.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import * as protoLoader from "@grpc/proto-loader";
import descriptor from "protobufjs/ext/descriptor/index.js";
import { reflect } from "../../../tools/harness/index.ts";
import { REPO, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";
import { jsonName, mapEntryName, protocFileDescriptors } from "../../src/transport/grpc/reflectionDescriptors.ts";

interface Field {
  name: string;
  jsonName?: string;
  number: number;
  label: string;
  type: string;
  typeName?: string;
  oneofIndex?: number;
  proto3Optional?: boolean;
}
interface Message {
  name: string;
  field?: Field[];
  nestedType?: Message[];
  enumType?: { name: string }[];
  oneofDecl?: { name: string }[];
  options?: { mapEntry?: boolean };
}
interface File {
  name: string;
  package?: string;
  dependency?: string[];
  messageType?: Message[];
  enumType?: { name: string }[];
  service?: { name: string; method?: { name: string; inputType: string; outputType: string }[] }[];
  options?: Record<string, unknown>;
}

const SERVICES = [
  "ctm.v1.CtmService",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "inference.GRPCInferenceService",
];

/** protoc's MapEntryName, written out separately from the server's: "foo_bar" -> "FooBarEntry". */
function protocMapEntryName(field: string): string {
  let name = "";
  let capitalise = true;
  for (const c of field) {
    if (c === "_") capitalise = true;
    else {
      name += capitalise ? c.toUpperCase() : c;
      capitalise = false;
    }
  }
  return `${name}Entry`;
}

/** protoc's ToJsonName: "top_k" -> "topK". */
function protocJsonName(field: string): string {
  let name = "";
  let capitalise = false;
  for (const c of field) {
    if (c === "_") capitalise = true;
    else {
      name += capitalise ? c.toUpperCase() : c;
      capitalise = false;
    }
  }
  return name;
}

/** What protoc would not have written, in the files of one reflection response. */
function protocViolations(files: File[]): string[] {
  const problems: string[] = [];
  const byName = new Map(files.map((file) => [file.name, file]));
  for (const file of files) {
    // Types this file can see: its own and its direct dependencies' (as protoc and protobuf-go resolve).
    const visible = new Map<string, Message | null>();
    const index = (f: File) => {
      const scope = f.package ? `.${f.package}` : "";
      for (const e of f.enumType ?? []) visible.set(`${scope}.${e.name}`, null);
      const visit = (outer: string, m: Message) => {
        const name = `${outer}.${m.name}`;
        visible.set(name, m);
        for (const e of m.enumType ?? []) visible.set(`${name}.${e.name}`, null);
        for (const nested of m.nestedType ?? []) visit(name, nested);
      };
      for (const m of f.messageType ?? []) visit(scope, m);
    };
    index(file);
    for (const dependency of file.dependency ?? []) {
      const dep = byName.get(dependency);
      if (dep) index(dep);
      else problems.push(`${file.name} imports ${dependency}, which the response does not include`);
    }
    const resolve = (where: string, typeName: string) => {
      if (!typeName.startsWith(".")) problems.push(`${where}: type name "${typeName}" is not fully qualified`);
      else if (!visible.has(typeName)) problems.push(`${where}: ${typeName} is not in ${file.name} or its imports`);
    };
    const checkMessage = (scope: string, message: Message) => {
      const name = `${scope}.${message.name}`;
      const fields = message.field ?? [];
      for (const field of fields) {
        const where = `${name}.${field.name}`;
        if (field.jsonName !== protocJsonName(field.name))
          problems.push(`${where}: json_name is ${field.jsonName}, protoc writes ${protocJsonName(field.name)}`);
        if (field.typeName) resolve(where, field.typeName);
        const type = field.typeName ? visible.get(field.typeName) : undefined;
        if (type?.options?.mapEntry) {
          const expected = `${name}.${protocMapEntryName(field.name)}`;
          if (field.typeName !== expected) problems.push(`${where}: map entry is ${field.typeName}, not ${expected}`);
          if (field.label !== "LABEL_REPEATED") problems.push(`${where}: a map field must be repeated`);
          const kv = (type.field ?? []).map((f) => `${f.name}=${f.number}`).join(",");
          if (kv !== "key=1,value=2") problems.push(`${where}: map entry fields are ${kv}`);
        }
        const oneof = field.oneofIndex === undefined ? undefined : message.oneofDecl?.[field.oneofIndex]?.name;
        const alone = fields.filter((f) => f.oneofIndex === field.oneofIndex).length === 1;
        if (field.proto3Optional && !(oneof === `_${field.name}` && alone))
          problems.push(`${where}: proto3_optional without its own synthetic oneof`);
        if (!field.proto3Optional && oneof === `_${field.name}` && alone)
          problems.push(`${where}: lost proto3_optional (its synthetic oneof ${oneof} reads as a real oneof)`);
      }
      const synthetic = (message.oneofDecl ?? []).map((_, i) =>
        fields.some((f) => f.oneofIndex === i && f.proto3Optional),
      );
      if (synthetic.some((s, i) => s && synthetic.slice(i).includes(false)))
        problems.push(`${name}: a synthetic oneof comes before a real one`);
      for (const nested of message.nestedType ?? []) checkMessage(name, nested);
    };
    const scope = file.package ? `.${file.package}` : "";
    for (const message of file.messageType ?? []) checkMessage(scope, message);
    for (const service of file.service ?? []) {
      for (const method of service.method ?? []) {
        resolve(`${scope}.${service.name}.${method.name} input`, method.inputType);
        resolve(`${scope}.${service.name}.${method.name} output`, method.outputType);
      }
    }
  }
  return problems;
}

type ReflectionResponse = {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
};

function decodeFiles(response: ReflectionResponse | undefined): File[] {
  const encoded = response?.file_descriptor_response?.file_descriptor_proto;
  assert.ok(encoded, `a file descriptor response, got ${JSON.stringify(response?.error_response)}`);
  return encoded.map(
    (bytes) =>
      descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(bytes), { enums: String }) as File,
  );
}

describe("server reflection", () => {
  let t: TestServer;
  let responses: Map<string, ReflectionResponse | undefined>;
  const described = (service: string) => decodeFiles(responses.get(service));
  before(async () => {
    t = await startTestServer();
    const answers = await reflect<ReflectionResponse>(
      t.address,
      SERVICES.map((symbol) => ({ file_containing_symbol: symbol })),
    );
    responses = new Map(SERVICES.map((service, i) => [service, answers[i]]));
  });
  after(() => t.close());

  it("lists every service the server exposes, reflection included", async () => {
    const [listed] = await reflect<ReflectionResponse>(t.address, [{ list_services: "*" }]);
    const names = (listed?.list_services_response?.service ?? []).map((s) => s.name).sort();
    assert.deepEqual(names, SERVICES);
  });

  for (const service of SERVICES) {
    it(`describes ${service} as protoc would: map entries, full type names, JSON names, proto3 optional, imports`, () => {
      const files = described(service);
      assert.ok(files.length > 0);
      assert.deepEqual(protocViolations(files), []);
    });
  }

  it("names the health List map entry StatusesEntry, as grpc-go and protobuf-go expect", () => {
    const [file] = described("grpc.health.v1.Health");
    const response = file?.messageType?.find((m) => m.name === "HealthListResponse");
    assert.deepEqual(
      response?.field?.map((f) => [f.name, f.label, f.typeName]),
      [["statuses", "LABEL_REPEATED", ".grpc.health.v1.HealthListResponse.StatusesEntry"]],
    );
    assert.deepEqual(
      response?.nestedType?.map((m) => [m.name, m.options?.mapEntry]),
      [["StatusesEntry", true]],
    );
  });

  it("keeps each file's options", () => {
    const [health] = described("grpc.health.v1.Health");
    assert.equal(health?.options?.goPackage, "google.golang.org/grpc/health/grpc_health_v1");
    assert.equal(health?.options?.javaPackage, "io.grpc.health.v1");
    const [reflectionV1] = described("grpc.reflection.v1.ServerReflection");
    assert.equal(reflectionV1?.options?.goPackage, "google.golang.org/grpc/reflection/grpc_reflection_v1");
  });

  it("rewrites proto3 optional fields, oneofs and nested maps the way protoc writes them", () => {
    // None of the served files has an `optional` field today; a contract that gains one must still
    // reflect correctly, so this runs the rewrite over one that has.
    const dir = mkdtempSync(join(tmpdir(), "ctm-reflection-"));
    writeFileSync(
      join(dir, "sample.proto"),
      `syntax = "proto3";
package sample.v1;
message Outer {
  optional double level = 3;
  oneof choice { string a = 1; int32 b = 2; }
  message Inner { map<string, Outer> by_name = 1; }
  Inner inner = 4;
  optional Inner maybe_inner = 5;
}`,
    );
    const definition = protoLoader.loadSync("sample.proto", { includeDirs: [dir], keepCase: true });
    rmSync(dir, { recursive: true, force: true });
    const files = protocFileDescriptors(definition).map(
      (bytes) =>
        descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(bytes), {
          enums: String,
        }) as File,
    );
    assert.deepEqual(protocViolations(files), []);
    const outer = files[0]?.messageType?.[0];
    assert.deepEqual(
      outer?.oneofDecl?.map((o) => o.name),
      ["choice", "_level", "_maybe_inner"],
    );
    assert.deepEqual(
      outer?.field?.map((f) => [f.name, f.proto3Optional ?? false, f.oneofIndex]),
      [
        ["level", true, 1],
        ["a", false, 0],
        ["b", false, 0],
        ["inner", false, undefined],
        ["maybe_inner", true, 2],
      ],
    );
    const inner = outer?.nestedType?.find((m) => m.name === "Inner");
    assert.equal(inner?.field?.[0]?.typeName, ".sample.v1.Outer.Inner.ByNameEntry");
  });

  it("writes map entry and JSON names the way protoc does", () => {
    for (const field of ["statuses", "foo_bar", "foo__bar", "foo_1bar", "x", "p50_ticks", "_x", "x_"]) {
      assert.equal(mapEntryName(field), protocMapEntryName(field), field);
      assert.equal(jsonName(field), protocJsonName(field), field);
    }
  });

  const grpcurl = join(homedir(), "go", "bin", "grpcurl");
  it("works with grpcurl through reflection alone", {
    skip: !existsSync(grpcurl) && `${grpcurl} is not installed`,
  }, async () => {
    const run = (...args: string[]) =>
      promisify(execFile)(grpcurl, ["-plaintext", ...args], { cwd: REPO, encoding: "utf8", timeout: 30_000 });
    const listed = await run(t.address, "list");
    assert.deepEqual(listed.stdout.trim().split("\n").sort(), SERVICES);
    for (const service of SERVICES) await run(t.address, "describe", service);
    const check = await run("-d", '{"service": ""}', t.address, "grpc.health.v1.Health/Check");
    assert.deepEqual(JSON.parse(check.stdout), { status: "SERVING" });
    const list = await run(t.address, "grpc.health.v1.Health/List");
    assert.equal(JSON.parse(list.stdout).statuses["ctm.v1.CtmService"].status, "SERVING");
    const model = await run("-d", '{"name": "mnist-ctm"}', t.address, "ctm.v1.CtmService/GetModel");
    // JSON names as protoc writes them, so grpcurl prints topK and trainedTicks whether it read the
    // contract through reflection or from the .proto file.
    assert.equal(JSON.parse(model.stdout).name, "mnist-ctm");
    assert.equal(typeof JSON.parse(model.stdout).trainedTicks, "number");
    const fromFile = await run(
      "-import-path",
      "proto",
      "-proto",
      "ctm/v1/ctm.proto",
      "-d",
      '{"name": "mnist-ctm"}',
      t.address,
      "ctm.v1.CtmService/GetModel",
    );
    assert.deepEqual(Object.keys(JSON.parse(model.stdout)), Object.keys(JSON.parse(fromFile.stdout)));
    const ready = await run(t.address, "inference.GRPCInferenceService/ServerReady");
    assert.deepEqual(JSON.parse(ready.stdout), { ready: true });
    const metadata = await run(
      "-d",
      '{"name": "mnist-ctm"}',
      t.address,
      "inference.GRPCInferenceService/ModelMetadata",
    );
    assert.deepEqual(
      JSON.parse(metadata.stdout).inputs.map((i: { name: string }) => i.name),
      ["input", "image"],
    );
  });
});
