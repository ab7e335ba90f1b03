# Sourced by the GPU-session scripts (run_gpu_checks.sh, gpu_teacher_distil.sh): sets PY and
# makes `import scopesr.*` work straight from this checkout on a bare, offline device machine.
# pyproject maps the folders sdk/, trainer/, converters/, bench/ onto scopesr.sdk, .trainer, ...;
# without a pip install a temporary folder of links does the same. A carried .samples/ folder
# (copies of the sample packages' data files, laid out as the packages are) goes on the path so
# that scopesr.sdk.samples finds the real images there.
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if ! "$PY" -c "import scopesr.sdk" 2>/dev/null; then
    SHIM=$(mktemp -d)
    mkdir -p "$SHIM/scopesr"
    for p in sdk trainer converters bench serve; do ln -s "$PWD/$p" "$SHIM/scopesr/$p"; done
    export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -d .samples ] && export PYTHONPATH="$PWD/.samples${PYTHONPATH:+:$PYTHONPATH}"
