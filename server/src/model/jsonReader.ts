/**
 * Reads fields out of a parsed JSON document, so that every validation error names the file, the
 * field's path and the offending value: "manifest.json: input.image.height must be a positive integer,
 * got 0".
 */

export class ModelFolderError extends Error {
  override name = "ModelFolderError";
}

type Json = unknown;

export class JsonReader {
  constructor(
    private readonly file: string,
    private readonly value: Json,
    private readonly path = "",
  ) {}

  /** A ModelFolderError naming this field (`throw reader.error(...)` narrows types where fail() cannot). */
  error(problem: string): ModelFolderError {
    return new ModelFolderError(`${this.file}: ${this.path || "(document)"} ${problem}`);
  }

  /** Throws a ModelFolderError naming this field. */
  fail(problem: string): never {
    throw this.error(problem);
  }

  private describe(): string {
    const text = JSON.stringify(this.value);
    if (text === undefined) return "nothing";
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  }

  field(name: string): JsonReader {
    const object = this.object();
    return new JsonReader(this.file, object[name], this.path ? `${this.path}.${name}` : name);
  }

  has(name: string): boolean {
    const value = this.object()[name];
    return value !== undefined && value !== null;
  }

  object(): Record<string, Json> {
    if (typeof this.value !== "object" || this.value === null || Array.isArray(this.value)) {
      this.fail(`must be an object, got ${this.describe()}`);
    }
    return this.value as Record<string, Json>;
  }

  array(options: { minLength?: number } = {}): JsonReader[] {
    if (!Array.isArray(this.value)) this.fail(`must be an array, got ${this.describe()}`);
    const items = this.value as Json[];
    const min = options.minLength ?? 0;
    if (items.length < min) this.fail(`must have at least ${min} item(s), got ${items.length}`);
    return items.map((item, i) => new JsonReader(this.file, item, `${this.path}[${i}]`));
  }

  string(options: { oneOf?: readonly string[] } = {}): string {
    if (typeof this.value !== "string" || this.value.length === 0) {
      this.fail(`must be a non-empty string, got ${this.describe()}`);
    }
    const text = this.value as string;
    if (options.oneOf && !options.oneOf.includes(text)) {
      this.fail(`must be one of ${options.oneOf.map((s) => JSON.stringify(s)).join(", ")}, got ${this.describe()}`);
    }
    return text;
  }

  optionalString(): string | undefined {
    return this.value === undefined || this.value === null ? undefined : this.string();
  }

  number(options: { min?: number; max?: number } = {}): number {
    if (typeof this.value !== "number" || !Number.isFinite(this.value)) {
      this.fail(`must be a finite number, got ${this.describe()}`);
    }
    const n = this.value as number;
    if (options.min !== undefined && n < options.min) this.fail(`must be >= ${options.min}, got ${n}`);
    if (options.max !== undefined && n > options.max) this.fail(`must be <= ${options.max}, got ${n}`);
    return n;
  }

  integer(options: { min?: number } = {}): number {
    const n = this.value;
    if (typeof n !== "number" || !Number.isInteger(n)) this.fail(`must be an integer, got ${this.describe()}`);
    if (options.min !== undefined && (n as number) < options.min) {
      this.fail(`must be an integer >= ${options.min}, got ${n}`);
    }
    return n as number;
  }

  positiveInteger(): number {
    return this.integer({ min: 1 });
  }
}
