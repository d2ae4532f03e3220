"""What the five paper runners share: one experiment layer that each paper fills in.

- `spec`: `Experiment` (a paper's profiles, options, cells, claims, figures) and its `Option`s;
- `cli`: `main`, the one entry point of every runner;
- `run`: `Run`, one invocation (profile, options, seed, output folder, caches) handed to a paper's functions;
- `identity` and `store`: a result's identity is its whole configuration; one folder per configuration,
  one atomically written file per finished cell, checked whenever it is read; merge of shards;
- `grid`, `jobs`, `claims` and `locks`: shards, dependencies between cells, resume, --jobs N processes
  that each take the next free cell, and no cell computed twice by processes sharing a folder;
- `verdicts`: claims judged with preconditions (reproduced / partly / not reproduced / inconclusive);
- `report`, `figures`, `machine`: report.md with settings and their sources, seaborn figures, machine facts;
- `atomic`: every saved artifact (tables, weights, figures) written whole or not at all.
"""
from tfadv.experiments.cli import main
from tfadv.experiments.report import Setting, markdown_table
from tfadv.experiments.run import Run
from tfadv.experiments.spec import Experiment, Option, seeds_option
from tfadv.experiments.verdicts import Claim, Verdict, inconclusive, judge, not_measured

__all__ = ["Claim", "Experiment", "Option", "Run", "Setting", "Verdict", "inconclusive", "judge", "main",
           "markdown_table", "not_measured", "seeds_option"]
