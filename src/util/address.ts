// Address parsing lives in src/mail/address.ts (the mail vocabulary). This re-export keeps the
// modules that still import it from here working until they move their import.
export * from '../mail/address.ts';
