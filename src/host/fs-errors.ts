/**
 * File-system failures in words. Node's messages ("EISDIR: illegal operation on a directory,
 * read") are for programmers; a user reads what failed, on which path, and what to do.
 */

/** The errno code of a thrown value, if it has one. */
export function errnoCode(err: unknown): string | null {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' ? code : null;
}

/** What went wrong and what to do about it, as the end of a sentence. */
export function fsReason(err: unknown): string {
  switch (errnoCode(err)) {
    case 'ENOSPC':
    case 'EDQUOT':
      return 'the disk is full; free some space';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied; check who owns it and its permissions';
    case 'EROFS':
      return 'the file system is read-only; make it writable';
    case 'EISDIR':
      return 'a folder is where a file should be; move the folder away';
    case 'ENOTDIR':
      return 'a file is where a folder should be; move the file away';
    case 'EEXIST':
      return 'something else is already in its place; move it away';
    case 'ENOENT':
      return 'it or its folder does not exist (was it deleted?)';
    case 'EMFILE':
    case 'ENFILE':
      return 'too many files are open; quit some programs';
    case 'ELOOP':
      return 'it is a loop of symbolic links';
    case 'ENAMETOOLONG':
      return 'its path is too long';
    case 'EIO':
      return 'the disk reported an input/output error';
    default: {
      const msg = err instanceof Error ? err.message : String(err);
      // Not an errno we know: keep the words, drop the "ECODE: " prefix and syscall detail.
      return msg.replace(/^[A-Z0-9_]+: /, '').replace(/, \w+ '[^']*'$/, '');
    }
  }
}

/** One sentence: "Could not <what> <path>: <reason>." */
export function fsSentence(what: string, target: string, err: unknown): string {
  return `Could not ${what} ${target}: ${fsReason(err)}.`;
}
