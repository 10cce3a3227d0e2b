"""provision: give a MotorGuard device its identity, in AWS IoT Core or on the local broker.

The entry point only (the console script `provision = provisioning.cli:main`, and
`python -m provisioning.cli`): parse the command line (provisioning/cli_parser.py, which holds the
--help text), run the chosen command (provisioning/cli_commands.py, which calls the library and
prints the result, as text or, with --json, as JSON) and turn every failure into one line, a hint
and its exit code. Exit codes: contract/exit_codes.py (docs/cli.md).
"""

from __future__ import annotations

import sys
import traceback

from contract import exit_codes
from provisioning import errors, identity
from provisioning.cli_parser import build_parser
from provisioning.errors import ProvisionError
from provisioning.registry import home_dir

INTERRUPTED = exit_codes.INTERRUPTED  # Ctrl-C (130), outside the table


def main(argv=None) -> int:
    """`provision`: one line and a hint on stderr for every failure, and its exit code; a traceback
    only with --debug. A malformed command line exits BAD_INPUT (argparse's 2)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(home_dir(args.home), args)
    except ProvisionError as e:
        if args.debug:
            traceback.print_exc()
        return exit_codes.fail(identity.redact(e.message), e.hint, e.code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:  # noqa: BLE001 - anything else: still one line
        if args.debug:
            traceback.print_exc()
        return exit_codes.fail("%s: %s" % (type(e).__name__, identity.redact(str(e))[:300]),
                               "run again with --debug for the details", errors.UNEXPECTED)


if __name__ == "__main__":
    sys.exit(main())
