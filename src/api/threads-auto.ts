/**
 * api.threads = "auto": how many API worker threads a machine gets. Each worker thread is a V8
 * isolate that loads the API's modules again (~70 MB RSS each, bench/README.md "Memory (#15)"),
 * and the threads only help when there are cores to spare for API reads besides SMTP, Dovecot and
 * rspamd: 2 threads with at least 4 cores and 2 GiB of memory, else none (the main thread serves
 * the API, as with api.threads = 0).
 */
export function autoApiThreads(cores: number, memBytes: number): number {
  return cores >= 4 && memBytes >= 2 * 1024 ** 3 ? 2 : 0;
}
