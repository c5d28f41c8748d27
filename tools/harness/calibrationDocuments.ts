/**
 * calibration.json documents as tests rewrite them: the certainty signal's block in any schema, and a
 * schema_version 3 file turned back into the schema_version 2 file it would have been before halting
 * heads (certainty's table and guarantees at the top level), to check that older files still load.
 */

/** One signal's block of a schema_version 3 file, or the top level of an older one. */
export interface SignalBlock {
  thresholds: unknown[];
  guarantees?: Record<string, { data: unknown; certified: unknown[] }>;
  accuracy_full_run?: number;
}

export interface CalibrationDocument extends Partial<SignalBlock> {
  schema_version: number;
  accuracy_most_certain: number;
  signals?: Record<string, SignalBlock>;
  [key: string]: unknown;
}

/** The certainty signal's block: under `signals` in schema 3, the top level before. */
export function certaintyBlock(document: CalibrationDocument): SignalBlock {
  if (document.schema_version !== 3) return document as CalibrationDocument & SignalBlock;
  const block = document.signals?.certainty;
  if (!block) throw new Error("a schema_version 3 calibration without signals.certainty");
  return block;
}

/** The document as a schema_version 2 file (certainty only); older documents unchanged. */
export function asVersion2(document: CalibrationDocument): CalibrationDocument & SignalBlock {
  if (document.schema_version !== 3) return document as CalibrationDocument & SignalBlock;
  // A schema 2 file had one signal and no target_signal to choose between signals.
  const { signals: _signals, target_signal: _target, ...rest } = document;
  const { thresholds, guarantees } = certaintyBlock(document);
  return { ...rest, schema_version: 2, thresholds, guarantees };
}
