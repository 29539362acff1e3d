# Quick start: `make demo` (train the baselines and methods on the two embedded datasets, build the tables) and `make test`.
# Both create .venv and install the project into it when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.snnbench-installed

.PHONY: demo test lint format

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bench run --method ann --dataset mnist5k
	$(BIN)/bench run --method lif_sg --dataset mnist5k
	$(BIN)/bench run --method ann --dataset nmnist_sim
	$(BIN)/bench run --method lif_sg --dataset nmnist_sim
	$(BIN)/bench run --method multi_threshold --dataset mnist5k
	$(BIN)/bench run --method compressed_event --dataset nmnist_sim
	$(BIN)/bench run --method slssnn --dataset mnist5k
	$(BIN)/bench run --method albsnn --dataset mnist5k
	$(BIN)/bench run --method hybrid_stdb --dataset mnist5k
	$(BIN)/bench tables

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
