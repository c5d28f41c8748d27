/**
 * A port the server could not bind, said in a line a person can act on: which port, the flag that
 * sets it, and why (in use, not permitted, no such address). Start-up prints it without a stack: a
 * second `npm start` is a mistake to correct, not a bug to debug.
 */
export class ListenError extends Error {
  override name = "ListenError";
}

/**
 * `what`: "gRPC", "metrics", ...; `flag`: the option that sets the port, `hostFlag` the one that sets
 * the address; `cause`: the bind's error or its text. Every port but the gRPC one can be turned off.
 */
export function listenError(
  what: string,
  host: string,
  port: number,
  flag: string,
  cause: unknown,
  hostFlag = "--host",
): ListenError {
  const off = flag === "--port" ? "" : `; ${flag} 0 turns it off`;
  const text = cause instanceof Error ? cause.message : String(cause);
  const code = /\b(EADDRINUSE|EACCES|EADDRNOTAVAIL|ENOTFOUND|EAI_AGAIN)\b/.exec(text)?.[1];
  const env = `CTM_${flag.slice(2).toUpperCase().replaceAll("-", "_")}`;
  const why =
    code === "EADDRINUSE"
      ? `the port is in use (another ctm-serve?); choose another ${flag} (or ${env}), or stop what holds it`
      : code === "EACCES"
        ? `permission denied (ports below 1024 need privileges); choose another ${flag} (or ${env})`
        : code === "EADDRNOTAVAIL" || code === "ENOTFOUND" || code === "EAI_AGAIN"
          ? `this machine has no address ${host}; check ${hostFlag}`
          : `${text}; choose another ${flag} (or ${env})`;
  return new ListenError(`cannot serve ${what} on ${host}:${port} (${flag}): ${why}${off}`);
}
