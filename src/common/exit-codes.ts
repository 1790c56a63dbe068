// The exit codes of every tsgi process (the CLI, serve's workers, the front's workers), in one
// place: a supervisor, systemd or a script acts on them.
export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, APP_LOAD: 3 } as const;
