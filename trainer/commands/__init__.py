"""The sub-commands of `python -m trainer`, one module each: NAME, HELP (one line), `add_arguments(parser)` and
`run(args)`. COMMANDS is their order in `python -m trainer --help`."""

from . import (bench, bundle, compare, data, evaluate, faithfulness, floor, measure, probe, push, report, space, sweep,
               train)

COMMANDS = [train, evaluate, measure, floor, report, sweep, bundle, bench, faithfulness, probe, compare, push, space,
            data]
