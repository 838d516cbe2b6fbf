"""Mutation check (docs/MUTATIONS.md): mutate.py FILE OLD NEW -- PYTEST ARGS.

Replaces the one occurrence of OLD in FILE by NEW, runs pytest on the given tests, prints
MUTANT KILLED (tests failed: good) or MUTANT SURVIVED, and always restores the file."""
import subprocess, sys, pathlib
f, old, new = sys.argv[1:4]
args = sys.argv[sys.argv.index("--") + 1:]
p = pathlib.Path(f); src = p.read_text()
assert src.count(old) == 1, f"mutation anchor found {src.count(old)} times"
p.write_text(src.replace(old, new))
try:
    r = subprocess.run(["uv", "run", "pytest", "-p", "no:cacheprovider", "--basetemp=/tmp/pt-mutate", "-q", *args],
                       capture_output=True, text=True)
    print("\n".join(r.stdout.strip().splitlines()[-3:]))
    print("MUTANT", "KILLED" if r.returncode != 0 else "SURVIVED")
finally:
    p.write_text(src)
