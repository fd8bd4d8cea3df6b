// CSV for finance (RFC 4180): every cell quoted when it needs to be, and cells that a spreadsheet
// would run as a formula (starting with = + - @, tab or carriage return) defused with a leading
// quote — a last error or a reference is text from other systems and must never execute.
const NUMBER = /^-?\d[\d,]*(\.\d+)?$/;
const FORMULA_START = /^[=+\-@\t\r]/;

export function csvCell(value: unknown): string {
  let text = value === null || value === undefined ? "" : String(value);
  if (FORMULA_START.test(text) && !NUMBER.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function csvLine(values: readonly unknown[]): string {
  return `${values.map(csvCell).join(",")}\r\n`;
}
