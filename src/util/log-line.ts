/**
 * A line for a long-running process's log (stderr: a file for a detached
 * executor). A log that cannot be written, a full disk or a closed pipe, never
 * stops the work it describes: the line is dropped.
 */
let guarded = false;

export function logLine(text: string): void {
  if (!guarded) {
    guarded = true;
    // A pipe reports its failures later, as an 'error' event that would otherwise end the process.
    process.stderr.on('error', () => undefined);
  }
  try {
    process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  } catch {
    // Dropped: the work goes on.
  }
}
