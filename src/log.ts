// The one structured logger (pino). Its level is set from config (LOG_LEVEL) by whoever starts a process.
// Logs go to stderr, so that stdout carries only a command's own output (`dispersal scan --wait` prints JSON).
import { pino } from "pino";

export const log = pino({ level: "info", base: { pid: process.pid, service: "dispersal-healing" } }, pino.destination(2));
export type Logger = typeof log;
