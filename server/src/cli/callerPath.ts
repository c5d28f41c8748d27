/**
 * Where a path typed on the command line points. npm runs every script in the package root, so a
 * relative path resolved against the working directory would miss what the user meant from where they
 * typed it (`cd docs && npm run classify -- ../models/...` would look for ../models outside the
 * repository). npm records that directory in INIT_CWD; without npm, it is the working directory.
 */
import { resolve } from "node:path";

export function callerPath(path: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.INIT_CWD || process.cwd(), path);
}
