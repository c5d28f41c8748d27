/**
 * The file descriptors that server reflection serves, written the way protoc writes them.
 *
 * @grpc/reflection serves the FileDescriptorProtos that @grpc/proto-loader made with protobufjs's
 * `toDescriptor`, which differ from protoc's in three ways that tools built on protoc's descriptors
 * (grpcurl, ghz, grpc_health_probe, Postman, grpcio's reflection client) check:
 *   - a map field's entry message is named after the field ("Statuses") instead of "<Field>Entry";
 *     protobuf-go refuses the whole file ("is an invalid map: incorrect implicit map entry name"),
 *     which made grpc.health.v1.Health (HealthListResponse.statuses) unusable through reflection;
 *   - type names are relative to their scope ("HaltPolicy") instead of fully qualified
 *     (".ctm.v1.HaltPolicy"), and a file lists no dependencies for the types it uses from another;
 *   - a proto3 `optional` field loses its proto3_optional flag, so its synthetic oneof reads as a
 *     real one, and field options come back as empty messages;
 *   - fields carry no json_name, which protoc fills in ("top_k" -> "topK"): grpcurl then printed
 *     `top_k` through reflection but `topK` from the .proto file (and from servers built on protoc).
 * This module rewrites the descriptors into protoc's form; nothing else about them changes.
 */
import * as protoLoader from "@grpc/proto-loader";

/** The parts of google.protobuf.FileDescriptorProto (as proto-loader decodes it) that this module touches. */
interface FileDescriptor {
  name: string;
  package?: string;
  dependency?: string[];
  messageType?: MessageDescriptor[];
  enumType?: { name: string }[];
  service?: { name: string; method?: { inputType: string; outputType: string }[] }[];
  extension?: FieldDescriptor[];
}

interface MessageDescriptor {
  name: string;
  field?: FieldDescriptor[];
  extension?: FieldDescriptor[];
  nestedType?: MessageDescriptor[];
  enumType?: { name: string }[];
  oneofDecl?: { name: string }[];
  options?: { mapEntry?: boolean } | null;
}

interface FieldDescriptor {
  name: string;
  jsonName?: string;
  label?: string;
  type?: string;
  typeName?: string;
  extendee?: string;
  oneofIndex?: number;
  proto3Optional?: boolean;
  options?: Record<string, unknown> | null;
}

const fileDescriptorProto = (() => {
  const definition = protoLoader.loadSync("google/protobuf/descriptor.proto", {
    longs: String,
    enums: String,
    defaults: false,
  });
  return definition["google.protobuf.FileDescriptorProto"] as protoLoader.MessageTypeDefinition<
    FileDescriptor,
    FileDescriptor
  >;
})();

/**
 * Every file in `packageDefinition`, deduplicated by name and rewritten in protoc's form, encoded as
 * FileDescriptorProto bytes.
 */
export function protocFileDescriptors(packageDefinition: protoLoader.PackageDefinition): Buffer[] {
  const files = new Map<string, FileDescriptor>();
  for (const definition of Object.values(packageDefinition)) {
    const encoded = (definition as Partial<protoLoader.ProtobufTypeDefinition>).fileDescriptorProtos ?? [];
    for (const bytes of encoded) {
      const file = fileDescriptorProto.deserialize(bytes);
      if (!files.has(file.name)) files.set(file.name, file);
    }
  }
  for (const file of files.values()) for (const message of file.messageType ?? []) protocFields(message);
  const definedIn = indexTypes(files.values());
  for (const file of files.values()) qualifyTypeNames(file, definedIn);
  return [...files.values()].map((file) => fileDescriptorProto.serialize(file));
}

/** protoc's name for the entry message of map field `fieldName`: "statuses" -> "StatusesEntry". */
export function mapEntryName(fieldName: string): string {
  return `${jsonName(`_${fieldName}`)}Entry`;
}

/** protoc's json_name of field `name`: "top_k" -> "topK", "p50_ticks" -> "p50Ticks". */
export function jsonName(name: string): string {
  return name.replace(/_+(.?)/g, (_, next: string) => next.toUpperCase());
}

function protocFields(message: MessageDescriptor): void {
  const nested = message.nestedType ?? [];
  for (const field of message.field ?? []) {
    const entry = nested.find((type) => type.options?.mapEntry && type.name === field.typeName);
    if (!entry || field.label !== "LABEL_REPEATED") continue;
    entry.name = mapEntryName(field.name);
    field.typeName = entry.name;
  }
  for (const field of message.field ?? []) {
    const oneof = field.oneofIndex === undefined ? undefined : message.oneofDecl?.[field.oneofIndex];
    const alone = message.field?.filter((other) => other.oneofIndex === field.oneofIndex).length === 1;
    // protobufjs turns `optional x` into a oneof named "_x" holding x alone, as protoc does, but drops the flag.
    if (oneof?.name === `_${field.name}` && alone) field.proto3Optional = true;
    if (field.options && Object.keys(field.options).length === 0) delete field.options;
    field.jsonName = jsonName(field.name);
  }
  moveSyntheticOneofsLast(message);
  for (const type of nested) protocFields(type);
}

/** protobuf-go refuses a real oneof declared after a synthetic one ("must be declared before synthetic oneofs"). */
function moveSyntheticOneofsLast(message: MessageDescriptor): void {
  const oneofs = message.oneofDecl ?? [];
  const fields = message.field ?? [];
  const synthetic = (index: number) => fields.some((f) => f.oneofIndex === index && f.proto3Optional);
  const order = [...oneofs.keys()].sort((a, b) => Number(synthetic(a)) - Number(synthetic(b)) || a - b);
  message.oneofDecl = order.map((index) => oneofs[index] as { name: string });
  for (const field of fields) if (field.oneofIndex !== undefined) field.oneofIndex = order.indexOf(field.oneofIndex);
}

/** Fully qualified name (".pkg.Outer.Inner") of every message and enum -> the file that defines it. */
function indexTypes(files: Iterable<FileDescriptor>): Map<string, FileDescriptor> {
  const definedIn = new Map<string, FileDescriptor>();
  const visit = (file: FileDescriptor, scope: string, message: MessageDescriptor) => {
    const name = `${scope}.${message.name}`;
    definedIn.set(name, file);
    for (const type of message.enumType ?? []) definedIn.set(`${name}.${type.name}`, file);
    for (const type of message.nestedType ?? []) visit(file, name, type);
  };
  for (const file of files) {
    const scope = file.package ? `.${file.package}` : "";
    for (const type of file.enumType ?? []) definedIn.set(`${scope}.${type.name}`, file);
    for (const message of file.messageType ?? []) visit(file, scope, message);
  }
  return definedIn;
}

function qualifyTypeNames(file: FileDescriptor, definedIn: Map<string, FileDescriptor>): void {
  const dependencies = new Set(file.dependency ?? []);
  // Protobuf's scoping: look the name up in the innermost scope first, then in each enclosing one.
  const qualify = (name: string, scope: string): string => {
    let found: string | undefined;
    if (name.startsWith(".")) found = definedIn.has(name) ? name : undefined;
    for (let s = scope; found === undefined; s = s.slice(0, Math.max(0, s.lastIndexOf(".")))) {
      if (definedIn.has(`${s}.${name}`)) found = `${s}.${name}`;
      if (s === "") break;
    }
    const owner = found === undefined ? undefined : definedIn.get(found);
    if (found === undefined || !owner) {
      throw new Error(`type ${name} (used in ${scope || file.name}) is in none of the loaded files; this is a bug`);
    }
    if (owner !== file) dependencies.add(owner.name);
    return found;
  };
  const fields = (scope: string, list: FieldDescriptor[] | undefined) => {
    for (const field of list ?? []) {
      if (field.typeName) field.typeName = qualify(field.typeName, scope);
      if (field.extendee) field.extendee = qualify(field.extendee, scope);
    }
  };
  const visit = (scope: string, message: MessageDescriptor) => {
    const name = `${scope}.${message.name}`;
    fields(name, message.field);
    fields(name, message.extension);
    for (const type of message.nestedType ?? []) visit(name, type);
  };
  const scope = file.package ? `.${file.package}` : "";
  for (const message of file.messageType ?? []) visit(scope, message);
  fields(scope, file.extension);
  for (const service of file.service ?? []) {
    for (const method of service.method ?? []) {
      method.inputType = qualify(method.inputType, scope);
      method.outputType = qualify(method.outputType, scope);
    }
  }
  file.dependency = [...dependencies];
}
