/**
 * The execution providers an operator can ask for. A module of its own, without onnxruntime, so that
 * reading the configuration does not load the runtime: the health probe reads it on every check.
 */
export type ProviderChoice = "auto" | "cpu" | "cuda";
export const PROVIDER_CHOICES: readonly ProviderChoice[] = ["auto", "cpu", "cuda"];
