// The one structured logger (pino). Its level is set from config (LOG_LEVEL) by whoever starts a process.
import { pino } from "pino";

export const log = pino({ level: "info", base: { pid: process.pid, service: "dispersal-healing" } });
export type Logger = typeof log;
