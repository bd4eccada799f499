#!/usr/bin/env bash
# The README's command-line tour, command for command; every output goes under tour/.
# Run from the repository root after `make demo` (or `make install`): bash examples/tour.sh
set -euo pipefail
rm -rf tour
source .venv/bin/activate
# tour:begin
neuralfolio data list                       # bundled sets: sp500, factors, gfc
neuralfolio data show gfc                   # validate a panel; per-asset figures
neuralfolio data show gfc --start 2010-01-01 --out tour/my_prices.csv   # ... and write it
neuralfolio data show tour/my_prices.csv    # your own file: dates first, one column per asset
neuralfolio labels sp500 --window 126 --out tour/labels.parquet
neuralfolio labels gfc --objective risk_parity --cov ewma --jobs 2 --augment 10000 --out tour/rp.parquet
neuralfolio risk gfc --weights BAC=0.25,JPM=0.25,GE=0.25,HD=0.25   # VaR, CVaR, drawdown, ...
# The course, step by step: train on prices up to 2007, then weights for new prices
# (GE at 16.3 is far below its 2005-2007 range: predict warns; --strict refuses).
neuralfolio train gfc --end 2007-12-31 --features prices --hidden 10 --activation sigmoid --out tour/models/gfc-course
neuralfolio predict tour/models/gfc-course --prices BAC=30.1,JPM=41.2,GE=16.3,HD=28.0
# The default network (attention over assets, risk inputs) needs a price history.
neuralfolio train gfc --end 2007-12-31 --out tour/models/gfc --plot tour/gfc-loss.png
neuralfolio predict tour/models/gfc --file tour/my_prices.csv
# Any family, head and loss: an LSTM over 60-day return windows with 10% caps (and capped
# labels), a network trained on realized variance with no labels, settings from a file.
neuralfolio train sp500 --features returns --window 60 --model lstm --config examples/caps.yaml --out tour/models/lstm-capped
neuralfolio train sp500 --loss variance --horizon 21 --out tour/models/minvar-outcome
neuralfolio train sp500 --loss "mse + 0.1*turnover" --augment 0 --optimizer rmsprop --lr 3e-4 --out tour/models/turnover
neuralfolio demo --case gfc --out tour/gfc  # the 2008 crisis case study, with its report
neuralfolio backtest gfc --test-start 2008-01-01 --window 60 --retrain-every monthly --rebalance weekly --cost-bps 10 --purge 5 --out tour/gfc-weekly
neuralfolio backtest --config examples/run.toml --jobs 2 --out tour/run
neuralfolio report tour/gfc-weekly          # re-write tour/gfc-weekly/report.html
# tour:end
