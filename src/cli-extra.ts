import type { Command } from 'commander';
import type { CliIO } from './cli.ts';
import { doctorCommands } from './doctor/cli.ts';
import { backupCommands } from './backup/cli.ts';
import { tlsCommands } from './tls/cli.ts';
import { queueCommands } from './queue/cli.ts';
import { apiCommands } from './api/cli.ts';
import { sieveCommands } from './sieve/cli.ts';

export interface CliHelpers {
  /** Prints `json` with --json, else `text`. */
  print(cmd: Command, json: unknown, text: string): void;
  io: CliIO;
}

/**
 * Commands contributed by other modules (API keys, the queue, domain verification...). Each adds
 * its subcommands to the program; the service layer behind them is shared with the API.
 */
export const extraCommands: ((program: Command, h: CliHelpers) => void)[] = [];
extraCommands.push(queueCommands);
extraCommands.push(apiCommands);
extraCommands.push(doctorCommands);
extraCommands.push(backupCommands);
extraCommands.push(tlsCommands);
extraCommands.push(sieveCommands);
