// Where the git-ignored Python environment lives; shared by the scripts that create and use it.
export const venvDir = ".venv";
export const pythonPath = process.platform === "win32" ? `${venvDir}/Scripts/python.exe` : `${venvDir}/bin/python`;
