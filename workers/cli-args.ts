/**
 * A config value that becomes one argument of an agent CLI must not look like a
 * flag: `--allowedTools Read --dangerously-skip-permissions` would turn every
 * permission check off, and `--model --yolo` would approve every tool call.
 * A leading dash is never part of a tool name, a model, a directory or a file
 * that needs one (`./-x` names the same path).
 */
export const notAFlag = (value: string) => !value.trimStart().startsWith('-');

export const NOT_A_FLAG = 'may not start with "-": the CLI would read it as a flag of its own';
