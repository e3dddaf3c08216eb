#!/usr/bin/env bash
# Prepare .gpu_carry/ (git ignores it) for scripts/gpu_train.sh on the device machine, which has torch, Lightning,
# torchmetrics and matplotlib but neither Hydra nor a registry:
#   bash scripts/gpu_carry.sh        then name .gpu_carry in the device tool's carry (about 9 MB)
# It holds wheels of Hydra and what Hydra needs beside those (hydra-core, omegaconf, antlr4-python3-runtime, whose
# PyPI release is a source archive only, so all three are built here; pure Python, any Python 3), at the versions
# .venv tests with, and a copy of ../shared/data, the real data sets, which do not travel otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
dest=.gpu_carry
rm -rf "$dest"
mkdir -p "$dest/wheels"
pins=$("$PY" -c "from importlib.metadata import version
print(' '.join(f'{n}=={version(n)}' for n in ('hydra-core', 'omegaconf', 'antlr4-python3-runtime')))")
# shellcheck disable=SC2086  # one argument per pin
"$PY" -m pip wheel -q --no-deps -w "$dest/wheels" $pins
if [[ -d ../shared/data ]]; then
    cp -r ../shared/data "$dest/data"
    chmod -R u+w "$dest/data"  # the next run removes it
else
    echo "gpu_carry: no ../shared/data here: gpu_train.sh will skip the experiments whose data sets are missing"
fi
echo "gpu_carry: $(ls "$dest/wheels" | tr '\n' ' ')and $(du -sh "$dest" | cut -f1) in all in $dest"
