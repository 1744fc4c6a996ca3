# KernelLab: the commands people type.
#   make report   roofline report, fused-vs-unfused tables and the layer kernels for this machine (reports/)
#   make test     build and run the test suite
#   make sanitize the test suite under ASan (Swift and C) and UBSan (C), every ISA
#   make fuzz     the file readers under libFuzzer + ASan, FUZZ_SECONDS each (reports/fuzz/)
#   make validate-traffic  cost models' DRAM bytes vs a callgrind cache simulation (reports/traffic.md)
#   make bench           time the default suite (medians, spread, GFLOP/s, efficiency, speedups)
#   make bench-baseline  save the smoke suite as this machine's "smoke" baseline
#   make bench-check     check the smoke suite against it (exit 1 on a regression)
#   make bench-ci        CI's check: smoke suite, fused/unfused speedups against the committed reference
#   make compare         optional: the lab beside PyTorch on the same shapes (reports/compare.md, COMPARE_THREADS=1)
#   make compare-venv    make the torch virtual environment it uses (.venv-compare/, once)
#   make train-bench     training tokens/s and memory of a transformer and a Mamba model, each op profiled (reports/train-bench/)
#   make mambapy-venv    optional: mambapy in the torch environment, timed beside the lab's Mamba by train-bench
#   make decode-bench    per-token decoding time and state memory against context length (reports/decode-bench/)
#   make copy            every copying experiment's quick preset (reports/copying/, under 45 minutes on 2 cores)
#   make beyond          phone-book lookup, hybrids, grokking, natural vs shuffled text: quick presets (reports/beyond/)
# Dependencies (libopenblas-dev libnuma-dev pkg-config) are installed when missing.

SWIFT       ?= swift
REPORTS     ?= reports
THREADS     ?= $(shell nproc)
DEB_PKGS    := libopenblas-dev libnuma-dev pkg-config
BIN_RELEASE := .build/release/kernel-lab

.PHONY: copy copy-paper beyond text-deps mambapy-venv
.PHONY: all deps build release test sanitize report roofline-report attention-report scan-report layers ceilings validate-traffic \
        bench bench-baseline bench-check bench-ci bench-ci-baseline fuzz clean

all: build

# Install the Debian packages the package links against, only when missing.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product kernel-lab

# XCTest only: Swift Testing would add a closing "0 tests" line of its own.
# The suite runs once on this CPU's best ISA, then once more as on each
# narrower CPU (KERNELLAB_ISA_MAX=avx2, =scalar: the lab then sees only those
# ISAs), so a test that depends on the host's ISA fails here, not on the next
# machine. Each run ends with its own XCTest summary.
# The narrower ISAs of this CPU, as the kernel-lab binary $(1) sees them.
narrower_isas = supported=$$(env -u KERNELLAB_ISA $(1) info | sed -n 's/.*(supported: \(.*\))/\1/p'); \
	caps=""; case "$$supported" in *avx512*) caps="avx2 scalar";; *avx2*) caps="scalar";; esac

test: deps
	$(SWIFT) test --disable-swift-testing
	@$(call narrower_isas,.build/debug/kernel-lab); \
	for cap in $$caps; do \
	  echo "== tests as on a CPU without the ISAs above $$cap (KERNELLAB_ISA_MAX=$$cap) =="; \
	  KERNELLAB_ISA_MAX=$$cap $(SWIFT) test --disable-swift-testing --skip-build || exit 1; \
	done

# The suite under AddressSanitizer (Swift and C) and UndefinedBehaviorSanitizer
# (C; swiftc has no -sanitize=undefined on Linux), once per ISA as make test
# runs it, in its own build folder. Any report aborts the run. Leak checking is
# off: LeakSanitizer reports only Foundation's and XCTest's own allocations
# here, and kernel buffers come from libnuma's mmap, which it does not track.
SAN_FLAGS := --scratch-path .build-sanitize --sanitize=address \
             -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined \
             -Xswiftc -Xclang-linker -Xswiftc -fsanitize=undefined

sanitize: deps
	$(SWIFT) build --build-tests $(SAN_FLAGS)
	@$(call narrower_isas,.build-sanitize/debug/kernel-lab); \
	for cap in best $$caps; do \
	  echo "== sanitized tests, ISA cap: $$cap =="; \
	  [ $$cap = best ] && cap=""; \
	  KERNELLAB_ISA_MAX=$$cap ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    $(SWIFT) test $(SAN_FLAGS) --skip-build --disable-swift-testing || exit 1; \
	done

# Fuzzing (README: "Fuzzing the readers"): each reader of a file users hand
# the lab (Tests/Fuzz/Targets) under libFuzzer with AddressSanitizer, for
# FUZZ_SECONDS each (or until FUZZ_RUNS executions), from its seeds (the
# harness adds Tests/Fuzz/Corpus/NAME, or the Profiles/ files it reads). New
# inputs go to $(REPORTS)/fuzz/corpus/NAME (the committed seeds are never
# rewritten); a crash stops that target and leaves its input as
# $(REPORTS)/fuzz/NAME-crash-*; keep it in Tests/Fuzz/Regressions/NAME/ and
# make test replays it. Scratch files go to /dev/shm, where fsync is free.
# lld links it: gold fails on the libFuzzer runtime with the entry point
# SwiftPM gives executables.
FUZZ_SECONDS ?= 60
FUZZ_RUNS    ?=
FUZZ_TARGETS ?= npy suite baseline config peers profile checkpoint
FUZZ_FLAGS   := -c release --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address \
                -Xswiftc -DKERNELLAB_FUZZ -Xcc -fsanitize=address -Xswiftc -use-ld=lld

fuzz: deps
	$(SWIFT) build $(FUZZ_FLAGS) --product kernel-lab-fuzz
	@mkdir -p $(REPORTS)/fuzz; status=0; \
	scratch=/dev/shm; [ -w $$scratch ] || scratch=$${TMPDIR:-/tmp}; \
	printf '| target | executions | seconds | exec/s | corpus | coverage | result |\n|---|---|---|---|---|---|---|\n' > $(REPORTS)/fuzz/summary.md; \
	for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s =="; mkdir -p $(REPORTS)/fuzz/corpus/$$t; \
	  TMPDIR=$$scratch KERNELLAB_FUZZ_TARGET=$$t ASAN_OPTIONS=detect_leaks=0 SWIFT_BACKTRACE=enable=no .build-fuzz/release/kernel-lab-fuzz \
	    -max_total_time=$(FUZZ_SECONDS) $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS)) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(REPORTS)/fuzz/$$t- $(REPORTS)/fuzz/corpus/$$t \
	    > $(REPORTS)/fuzz/$$t.log 2>&1; rc=$$?; \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(REPORTS)/fuzz/$$t.log); \
	  secs=$$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' $(REPORTS)/fuzz/$$t.log); \
	  cov=$$(grep -o 'cov: [0-9]*' $(REPORTS)/fuzz/$$t.log | tail -1 | cut -d' ' -f2); \
	  units=$$(ls $(REPORTS)/fuzz/corpus/$$t | wc -l); \
	  if [ $$rc = 0 ]; then result=clean; else result="FAILED (exit $$rc, see $(REPORTS)/fuzz/$$t.log)"; status=1; fi; \
	  rate=$$([ -n "$$secs" ] && [ "$$secs" -gt 0 ] && echo $$(( $${runs:-0} / secs )) || echo -); \
	  echo "$$t: $${runs:-0} executions, $$result"; \
	  echo "| $$t | $${runs:-0} | $${secs:--} | $$rate | $$units | $${cov:--} | $$result |" >> $(REPORTS)/fuzz/summary.md; \
	done; \
	echo "summary: $(REPORTS)/fuzz/summary.md"; cat $(REPORTS)/fuzz/summary.md; exit $$status

# The main job: this machine's ceilings (measured once, then reused from
# Profiles/machines/), the roofline report of the default suite, and the
# fused-vs-unfused tables of both kernels. Ends with the report's location and
# its five-line summary.
report: roofline-report attention-report scan-report layers
	@echo
	@echo "roofline report: $(REPORTS)/roofline/roofline.html (also .md .svg .json .csv)"
	@echo "tables:          $(REPORTS)/attention.md $(REPORTS)/scan.md"
	@echo "layer kernels:   $(REPORTS)/layers/layers.md, layers-roofline.svg, roofline/roofline.html"
	@cat $(REPORTS)/roofline/summary.txt

# The memory-bound layer kernels past the caches, on 1 thread: GB/s against
# the DRAM triad and their place on the roofline (README: "Measured: the layer
# kernels against the DRAM triad"); then the layers suite as a roofline report
# of its own (each kernel's bound and fraction of it, beside the DRAM and L3 roofs).
layers: release
	@$(BIN_RELEASE) layers --threads 1 --out $(REPORTS)/layers
	@$(BIN_RELEASE) roofline --suite layers --threads 1 --out $(REPORTS)/layers/roofline

roofline-report: release
	@mkdir -p $(REPORTS)/roofline
	@$(BIN_RELEASE) roofline --suite default --threads $(THREADS) --out $(REPORTS)/roofline | tee $(REPORTS)/roofline/.summary.tmp
	@tail -n 5 $(REPORTS)/roofline/.summary.tmp > $(REPORTS)/roofline/summary.txt && rm -f $(REPORTS)/roofline/.summary.tmp

ceilings: release
	@$(BIN_RELEASE) ceilings --threads $(THREADS)

attention-report: release
	@mkdir -p $(REPORTS)
	@$(BIN_RELEASE) info | tee $(REPORTS)/machine.txt
	@tmp=$(REPORTS)/.attention.md.tmp; : > $$tmp; \
	for args in "--seq 1024 --head-dim 64" "--seq 4096 --head-dim 64" "--seq 4096 --head-dim 64 --causal" "--seq 4096 --head-dim 128"; do \
	  for t in 1 $(THREADS); do \
	    cmd="kernel-lab attention --batch 1 --heads 8 $$args --threads $$t --pass both --impl both --repeats 3 --warmup 1"; \
	    echo "$$cmd" | tee -a $$tmp; \
	    $(BIN_RELEASE) $${cmd#kernel-lab } | tee -a $$tmp || exit 1; \
	    echo >> $$tmp; \
	    [ "$$t" = "$(THREADS)" ] && break; \
	  done; \
	done; mv $$tmp $(REPORTS)/attention.md
	@echo "attention report written to $(REPORTS)/attention.md"

scan-report: release
	@mkdir -p $(REPORTS)
	@tmp=$(REPORTS)/.scan.md.tmp; : > $$tmp; \
	for t in 1 $(THREADS); do \
	  cmd="kernel-lab scan --batch 1 --channels 1024 --seq 4096 --state 16 --threads $$t --pass both --impl both --repeats 3 --warmup 1"; \
	  echo "$$cmd" | tee -a $$tmp; \
	  $(BIN_RELEASE) $${cmd#kernel-lab } | tee -a $$tmp || exit 1; \
	  echo >> $$tmp; \
	  [ "$$t" = "$(THREADS)" ] && break; \
	done; mv $$tmp $(REPORTS)/scan.md
	@echo "scan report written to $(REPORTS)/scan.md"

# Small shapes under valgrind's callgrind (AVX2 path, OpenBLAS Haswell core,
# one thread); valgrind is installed when missing. A few minutes.
validate-traffic: release
	@command -v valgrind >/dev/null || { \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "installing: valgrind"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	@mkdir -p $(REPORTS)
	@$(BIN_RELEASE) traffic validate --valgrind "$$(command -v valgrind)" --out $(REPORTS)/traffic.md

# Throughput regression testing (README: "Throughput regression testing").
# The baseline and the check use the smoke suite: seconds to run, and wide
# thresholds that a shared 2-core VM does not trip by drift alone.
BENCH_SUITE    ?= default
BENCH_BASELINE ?= smoke

bench: release
	@$(BIN_RELEASE) bench --suite $(BENCH_SUITE) --threads $(THREADS)

bench-baseline: release
	@$(BIN_RELEASE) bench --suite smoke --threads $(THREADS) --save-baseline $(BENCH_BASELINE)

bench-check: release
	@$(BIN_RELEASE) bench --suite smoke --threads $(THREADS) --check $(BENCH_BASELINE) --confirm

# CI's check (README: "In CI"): the fused/unfused speedups of the smoke suite
# against this hardware's committed baseline (Profiles/baselines/<id>/ci.json;
# without one, another machine's that ran the same best ISA), 50% threshold AND
# the rank test; then the floors that need no baseline (the suite's
# min_speedup, and each fused kernel against its own scalar path). A
# regression must repeat on re-measurement. bench-ci-baseline writes this
# hardware's baseline (run it on a quiet machine, then commit it).
CI_THREADS  ?= $(shell n=$$(nproc); [ $$n -ge 2 ] && echo 2 || echo 1)

bench-ci: release
	@$(BIN_RELEASE) bench --suite smoke --threads $(CI_THREADS) --check ci --floors --compare speedup --confirm --format markdown
	@$(BIN_RELEASE) bench --suite layers --threads $(CI_THREADS) --floors --confirm --format markdown

bench-ci-baseline: release
	@$(BIN_RELEASE) bench --suite smoke --threads $(CI_THREADS) --repeats 12 --save-baseline ci

clean:
	rm -rf .build $(REPORTS)

# Side by side with PyTorch (README: "Side by side with PyTorch"): the lab's
# kernels and torch's on the same shapes, interleaved in one run; writes
# $(REPORTS)/compare.md, $(REPORTS)/compare.json and the roofline with the
# torch peers in $(REPORTS)/compare/. Optional: test and report never need
# torch. The virtual environment is made on first use and reused (stamp file).
# PyPI's default Linux torch pulls several GB of CUDA wheels; the CPU build
# (a "+cpu" local version) is ~190 MB. pip finds it through its configured
# find-links (pip.conf); elsewhere set COMPARE_TORCH (e.g. COMPARE_TORCH=torch).
COMPARE_PYTHON  ?= python3
COMPARE_VENV    ?= .venv-compare
COMPARE_TORCH   ?= torch==2.13.0+cpu
COMPARE_THREADS ?= 1
COMPARE_ARGS    ?=
COMPARE_PIP     := $(COMPARE_TORCH) numpy

.PHONY: compare compare-venv

compare-venv:
	@stamp=$(COMPARE_VENV)/.kernellab-installed; \
	if [ "$$(cat $$stamp 2>/dev/null)" != "$(COMPARE_PIP)" ]; then \
	  echo "making $(COMPARE_VENV): $(COMPARE_PIP) (once; reused by later runs)"; \
	  rm -rf $(COMPARE_VENV) && $(COMPARE_PYTHON) -m venv $(COMPARE_VENV) || exit 1; \
	  $(COMPARE_VENV)/bin/pip install --quiet --disable-pip-version-check --only-binary :all: $(COMPARE_PIP) || { \
	    echo "compare-venv: pip could not install '$(COMPARE_PIP)'. The +cpu torch wheel is not on PyPI itself;"; \
	    echo "  set COMPARE_TORCH to a torch your pip can reach (COMPARE_TORCH=torch: PyPI's, with its CUDA wheels)."; \
	    exit 1; }; \
	  $(COMPARE_VENV)/bin/python -c "import torch; x = torch.ones(64, 64); assert float((x @ x)[0, 0]) == 64.0; \
	    print('torch', torch.__version__, 'cpu capability', torch.backends.cpu.get_cpu_capability())" || exit 1; \
	  echo "$(COMPARE_PIP)" > $$stamp; \
	fi

# COMPARE_ISA=avx2 runs both sides as on an AVX2-only CPU: the lab's
# KERNELLAB_ISA, torch's ATEN_CPU_CAPABILITY and its MKL's MKL_ENABLE_INSTRUCTIONS.
COMPARE_ISA     ?=
COMPARE_ENV     := $(if $(COMPARE_ISA),KERNELLAB_ISA=$(COMPARE_ISA) ATEN_CPU_CAPABILITY=$(COMPARE_ISA) \
                     MKL_ENABLE_INSTRUCTIONS=$(shell echo $(COMPARE_ISA) | tr a-z A-Z))

compare: release compare-venv
	@mkdir -p $(REPORTS)/compare
	@$(COMPARE_ENV) $(COMPARE_VENV)/bin/python Sources/compare/compare.py --lab $(BIN_RELEASE) --threads $(COMPARE_THREADS) \
	  --out $(REPORTS) $(COMPARE_ARGS)
	@$(COMPARE_ENV) $(BIN_RELEASE) roofline --suite $(REPORTS)/compare/suite.json --peers $(REPORTS)/compare.json \
	  --threads $(COMPARE_THREADS) --out $(REPORTS)/compare
	@echo
	@echo "comparison: $(REPORTS)/compare.md (points: $(REPORTS)/compare.json)"
	@echo "roofline with the torch peers: $(REPORTS)/compare/roofline.html (also .md .svg .json .csv)"

# The training engine's benchmarks (README: "Training engine"). train-bench
# runs the PyTorch eager peer too when make compare's virtual environment
# exists (make compare-venv makes it); without it the lab runs alone.
TRAIN_BENCH_ARGS  ?=
DECODE_BENCH_ARGS ?=

.PHONY: train-bench decode-bench

train-bench: release
	@$(BIN_RELEASE) train-bench --profile --out $(REPORTS)/train-bench \
	  $(if $(wildcard $(COMPARE_VENV)/.kernellab-installed),--torch $(COMPARE_VENV)/bin/python) \
	  $(if $(wildcard $(COMPARE_VENV)/.mambapy-installed),--mambapy) $(TRAIN_BENCH_ARGS)

# mambapy (PyPI: a pure-PyTorch Mamba with a parallel scan) in the torch
# environment, the issue's reference for the lab's Mamba in train-bench
# (without its dependencies: it needs only the torch already there).
MAMBAPY_PIP ?= mambapy==1.2.0
mambapy-venv: compare-venv
	@[ "$$(cat $(COMPARE_VENV)/.mambapy-installed 2>/dev/null)" = "$(MAMBAPY_PIP)" ] || { \
	  $(COMPARE_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps $(MAMBAPY_PIP) && \
	  $(COMPARE_VENV)/bin/python -c "import mambapy.mamba" && echo "$(MAMBAPY_PIP)" > $(COMPARE_VENV)/.mambapy-installed; }

decode-bench: release
	@$(BIN_RELEASE) decode-bench --threads 1 --out $(REPORTS)/decode-bench $(DECODE_BENCH_ARGS)

# The copying experiments (Jelassi et al. 2024), quick presets: the grid's
# training runs as COPY_SHARDS one-thread processes side by side (small models
# use two cores better as two runs than as one run on two threads), then one
# pass that finds every run finished and writes reports/copying/. Interrupted,
# it resumes where it stopped; finished runs are never trained again.
COPY_PRESET ?= quick
COPY_SEEDS  ?= 3
COPY_SHARDS ?= $(THREADS)
# $(1): experiments, $(2): output directory.
copy_grid = start=$$(date +%s); pids=""; \
	for k in $$(seq 1 $(COPY_SHARDS)); do \
	  $(BIN_RELEASE) copy run --experiment $(1) --preset $(COPY_PRESET) --seeds $(COPY_SEEDS) --threads 1 --shard $$k/$(COPY_SHARDS) --out $(2) & \
	  pids="$$pids $$!"; \
	done; \
	for p in $$pids; do wait $$p || { kill $$pids 2>/dev/null; exit 1; }; done; \
	$(BIN_RELEASE) copy run --experiment $(1) --preset $(COPY_PRESET) --seeds $(COPY_SEEDS) --out $(2) || exit 1; \
	echo "$(2): $$(( $$(date +%s) - start )) s"

copy: release
	@$(call copy_grid,all,$(REPORTS)/copying)

# Beyond copying (phone-book lookup, hybrids, grokking, natural vs shuffled
# text), quick presets, the same way: reports/beyond/. The text is Debian's
# fortunes package, installed when missing (make test never needs it).
TEXT_PKGS := fortunes

text-deps:
	@dpkg-query -W -f='$${Status}' $(TEXT_PKGS) 2>/dev/null | grep -q "install ok installed" || { \
	  echo "installing: $(TEXT_PKGS)"; SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(TEXT_PKGS) >/dev/null; }

beyond: release text-deps
	@$(call copy_grid,beyond,$(REPORTS)/beyond)

# The paper presets: hours. The expected time is printed before training starts.
copy-paper:
	$(MAKE) copy COPY_PRESET=paper
