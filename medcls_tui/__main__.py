"""`python -m medcls_tui ...` is `medcls ...`: what `torchrun -m medcls_tui train ...` runs on every rank."""
from .cli import main

if __name__ == "__main__":
    main()
