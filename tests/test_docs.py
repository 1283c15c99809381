"""The docs, read as a new user reads them: every option, flag, YAML key, default, module and
metric name that README.md and docs/*.md show must exist with that name (and that default),
so the docs cannot drift from the code. Fast: no model loads, nothing trains."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import yaml

from directpo.cli import COMMANDS, build_parser
from directpo.cli_flags import yaml_and_flags
from directpo.config import DPOConfig, load_config
from directpo.errors import ConfigError
from directpo.foreign_names import GENERIC_COMPONENT, REFUSED, RENAMED, component_hint
from directpo.losses import LOSSES
from directpo.trl_compat import ALIASES, NO_EFFECT

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FIELDS = {f.name: f for f in dataclasses.fields(DPOConfig)}
NAMES = list(FIELDS)
# names a TRL config may use: directpo's options, TRL's other spellings, harmless TRL keys;
# OpenRLHF's and torchtune's, renamed or refused (docs/migrating.md)
CONFIG_KEYS = set(FIELDS) | set(ALIASES) | set(NO_EFFECT) | set(RENAMED) | set(REFUSED)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _fences(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, opening and closing fences paired in order."""
    blocks, language, body = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, body = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(body)))
                language = None
        elif language is not None:
            body.append(line)
    return blocks


def _blocks(text: str, languages: tuple[str, ...]) -> list[str]:
    return [body for language, body in _fences(text) if language in languages]


def _inline_code(text: str) -> list[str]:
    """Inline code spans (outside fenced blocks)."""
    prose = text
    for _, body in _fences(text):
        prose = prose.replace(body, "")
    return re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose)


def _command_lines(text: str) -> list[list[str]]:
    """Every ``directpo COMMAND ...`` in bash blocks and inline code, as the tokens after the
    command name (continued lines joined, comments cut; tokens before ``directpo``, such as
    torchrun's or accelerate's own flags, are not directpo's)."""
    lines = []
    for block in _blocks(text, ("bash", "sh", "")):
        lines += block.replace("\\\n", " ").splitlines()
    lines += _inline_code(text)
    found = []
    for line in lines:
        line = line.split(" # ", 1)[0]
        match = re.search(r"(?:^|\s)(?:-m )?directpo (\w+)(.*)$", line)
        if match and match.group(1) in COMMANDS:
            tokens = [t for t in shlex.split(match.group(2)) if t not in ("...", "…")]
            found.append([match.group(1), *tokens])
    return found


COMMAND_LINES = [(path.name, argv) for path in DOCS for argv in _command_lines(_text(path))]


def test_the_docs_show_directpo_command_lines() -> None:
    commands = {argv[0] for _, argv in COMMAND_LINES}
    assert {"train", "score", "rank", "generate"} <= commands  # the extraction itself works


@pytest.mark.parametrize(
    ("doc", "argv"), COMMAND_LINES, ids=[" ".join(argv)[:60] for _, argv in COMMAND_LINES]
)
def test_every_flag_on_a_documented_command_line_is_an_option(doc: str, argv: list[str]) -> None:
    command = COMMANDS[argv[0]]
    if "--help" in argv:
        return
    if command.takes_yaml:  # as main() reads it: directpo's flags and TRL's, judged at once
        _, flags = yaml_and_flags(argv[1:], command.options)
        command.options.translate(flags, NAMES, "command line")
    else:
        _, unknown = build_parser().parse_known_args(argv)
        assert not [t for t in unknown if t.startswith("-")], f"{doc}: {' '.join(argv)}"


def test_every_key_of_a_documented_yaml_block_is_an_option() -> None:
    """Each key of a YAML block is an option (or TRL's name for one), and the block's values
    are ones a config takes (a renamed choice, ``online_pairs: best_worst``, fails here)."""
    for path in DOCS:
        for block in _blocks(_text(path), ("yaml", "yml")):
            values = yaml.safe_load(block)
            try:
                DPOConfig.translate(values, NAMES, path.name)
                DPOConfig(**{"model_name_or_path": "m", **values})  # its values too, together
            except ConfigError as error:
                pytest.fail(f"{path.name}: {error}")


def test_every_inline_option_is_an_option() -> None:
    """``key: value`` and ``--key`` spans in the prose name options (or TRL's names: the docs
    also show TRL keys that are refused, so only the name is checked here)."""
    cli_names = set()
    for command in COMMANDS.values():
        cli_names |= {f.name for f in dataclasses.fields(command.options)}
    unknown = []
    for path in DOCS:
        for span in _inline_code(_text(path)):
            match = re.match(r"^([a-z][a-z0-9_]*): ", span)
            if match and match.group(1) != "directpo" and match.group(1) not in CONFIG_KEYS:
                unknown.append(f"{path.name}: `{span}`")
            # a span of flags alone (`--skip_invalid_rows true`); flags in a command line are
            # checked with their command above, those of bench scripts and launchers are theirs
            flags = re.findall(r"(?:^|\s)--([a-z][a-z0-9_]*)", span) if span[:2] == "--" else []
            for flag in flags:
                name = flag[3:] if flag.startswith("no_") else flag
                if name not in CONFIG_KEYS | cli_names | {"config", "help"}:
                    unknown.append(f"{path.name}: `{span}`")
        for match in re.finditer(r"DPOConfig\(([^)]*)\)", _text(path)):
            unknown += [
                f"{path.name}: DPOConfig({key}=...)"
                for key in re.findall(r"(\w+)=", match.group(1))
                if key not in CONFIG_KEYS
            ]
    assert not unknown, unknown


# flags a bash block's comments name that are other tools' (accelerate's), or transformers'
# generate() arguments the docs say directpo refuses: none may become a directpo option unseen
FOREIGN_FLAGS = {"cpu", "multi_gpu", "do_sample", "num_beams", "version"}


def test_every_flag_a_command_lines_comment_names_is_an_option() -> None:
    """README's score / rank / generate block explains its flags in comments (``--output_prefix
    run2_``, ``--completions_column``, ``--keep_special_tokens``, ``--top_p``), which the command
    lines' check cuts off: each flag there is a directpo option, or one the docs name as another
    tool's (FOREIGN_FLAGS, which stay no option of any command)."""
    cli_names = set()
    for command in COMMANDS.values():
        cli_names |= {f.name for f in dataclasses.fields(command.options)}
    unknown, named = [], set()
    for path in DOCS:
        for block in _blocks(_text(path), ("bash", "sh", "")):
            for line in block.splitlines():
                comment = line.partition("#")[2]
                for flag in re.findall(r"(?:^|[\s(`'])--([a-z][a-z0-9_]*)", comment):
                    name = flag[3:] if flag.startswith("no_") else flag
                    named.add(name)
                    if name not in CONFIG_KEYS | cli_names | {"config", "help"} | FOREIGN_FLAGS:
                        unknown.append(f"{path.name}: --{flag} in '{line.strip()}'")
    assert not unknown, unknown
    assert {"output_prefix", "completions_column", "keep_special_tokens"} <= named  # read at all
    assert not FOREIGN_FLAGS & cli_names, "a flag the docs call another tool's is an option now"


# values the docs show in order to say they are refused ("`dtype: bf16` is refused as a value")
REFUSED_SPELLINGS = {"dtype: bf16"}


def test_every_documented_word_value_is_one_an_option_takes() -> None:
    """``eval_strategy: epoch``, ``online_pairs: above_gap``, ``steps|epoch|no``: a word the
    docs give an option is one of its choices (a renamed choice would send a user's copied
    line to a refusal), unless the docs show it as a refused spelling (REFUSED_SPELLINGS).
    Values a run checks against other options (``master_weights: bfloat16`` needs bf16) or
    placeholders (``eval_generate: N``) are not this check's: only 'must be one of' counts."""
    wrong = []
    for path in DOCS:
        text = _text(path)
        for span in set(_inline_code(text)):
            match = re.match(r"^([a-z][a-z0-9_]*): ([\w.|-]+)$", span)
            if not match or match.group(1) not in FIELDS:
                continue
            for word in match.group(2).split("|"):
                try:
                    DPOConfig(model_name_or_path="m", **{match.group(1): yaml.safe_load(word)})
                except ConfigError as error:
                    if "must be one of" not in str(error):
                        continue
                    if span not in REFUSED_SPELLINGS:
                        wrong.append(f"{path.name}: `{span}`: {error}")
    assert not wrong, wrong


def test_every_keyword_of_a_documented_api_call_is_taken() -> None:
    """``train(config, beta=0.2)``, ``ImplicitReward(..., beta=0.1)``: each keyword the docs
    pass is a parameter of that function (train's: a DPOConfig option too; from_run passes
    ImplicitReward's on)."""
    import inspect

    import directpo

    def parameters(function: object) -> set[str]:
        return set(inspect.signature(function).parameters)  # type: ignore[arg-type]

    reward = parameters(directpo.ImplicitReward)
    takes = {
        "train": parameters(directpo.train) | CONFIG_KEYS,
        "ImplicitReward": reward,
        "ImplicitReward.from_run": parameters(directpo.ImplicitReward.from_run) | reward,
    }
    unknown, seen = [], set()
    for path in DOCS:
        calls = r"(?<![\w.])(ImplicitReward\.from_run|ImplicitReward|train)\(([^()]*)\)"
        for match in re.finditer(calls, _text(path)):
            seen.add(match.group(1))
            unknown += [
                f"{path.name}: {match.group(1)}({key}=...)"
                for key in re.findall(r"(\w+)=", match.group(2))
                if key not in takes[match.group(1)]
            ]
    assert seen == set(takes)  # the extraction itself works
    assert not unknown, unknown


def _documented_default(text: str, default: object) -> str | None:
    """Why ``text`` (a README default cell) is not ``default``, or None when it agrees or is
    words describing a computed default (``the policy's start``, ``the model's (MoE)``)."""
    word = text.strip().split(" ")[0].lower()
    if default is None or isinstance(default, dict):
        return None
    if isinstance(default, list) and len(default) == 1:
        default = default[0]
    if isinstance(default, bool):
        ok = word in (("true", "on") if default else ("false", "off"))
    elif isinstance(default, int | float):
        try:
            ok = float(word) == default
        except ValueError:
            ok = word == "off" and default == 0  # lora_r: 0 (off)
    else:
        ok = word == str(default).lower()
    return None if ok else f"documented {text!r}, the default is {default!r}"


def _option_tables() -> list[tuple[str, str, str]]:
    """(doc, names cell, defaults cell) of every row of a table with 'option' and 'default'
    columns (README's "Every option", performance.md's techniques)."""
    rows = []
    for path in DOCS:
        columns = None
        for line in _text(path).splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not line.startswith("|"):
                columns = None
            elif "option" in cells and "default" in cells:
                columns = (cells.index("option"), cells.index("default"))
            elif columns and not set(line) <= set("|-: "):
                rows.append((path.name, cells[columns[0]], cells[columns[1]]))
    return rows


def test_option_tables_name_real_options_with_their_defaults() -> None:
    rows = _option_tables()
    assert len(rows) > 25
    problems = []
    for doc, names_cell, defaults_cell in rows:
        # `tools` column: a data column, not an option
        names = re.findall(r"`([a-z_0-9]+)`(?! column)", names_cell)
        problems += [f"{doc}: {name}: not an option" for name in names if name not in FIELDS]
        defaults = [d for d in re.split(r",\s|\s/\s", defaults_cell) if d]
        for name, documented in zip(names, defaults, strict=False):
            if name in FIELDS and documented not in ("…", "—"):
                field = FIELDS[name]
                real = field.default_factory() if field.default is dataclasses.MISSING else None
                real = field.default if real is None else real
                problem = _documented_default(documented, real)
                problems += [f"{doc}: {name}: {problem}"] if problem else []
    assert not problems, problems


def _real_default(name: str) -> object:
    field = FIELDS[name]
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


# a default stated in prose: "`beta` (default 0.1", "`dtype`, default float32", "`weight`
# defaults to 1", "`distributed: auto` (default)", "the default logging_steps 10"
PROSE_DEFAULTS = (
    r"`([a-z_0-9]+)`(?: \(|, )default:? `?([^`\s,;)]+)",
    r"`([a-z_0-9]+)` defaults to `?([^`\s,;)]+)",
    r"`([a-z_0-9]+): ([^`]+)` \((?:the )?default\)",
    r"the default `?([a-z_0-9]+)`? ([0-9][^\s,;)]*)",
)


def test_every_default_stated_in_prose_is_dpoconfigs() -> None:
    """Outside the option tables a default is said in a sentence (`cache_tokenized_max_gb`
    (default 10), `distributed: auto` (default)); each must be DPOConfig's, so a changed
    default cannot leave a sentence behind. Words for a computed default (`max_length` − 1)
    are not compared."""
    found, problems = 0, []
    for path in DOCS:
        text = _text(path).replace("\n", " ")
        for pattern in PROSE_DEFAULTS:
            for name, documented in re.findall(pattern, text):
                if name not in FIELDS or documented.startswith("`"):
                    continue
                found += 1
                problem = _documented_default(documented.strip("`"), _real_default(name))
                problems += [f"{path.name}: {name}: {problem}"] if problem else []
    assert found >= 6, found
    assert not problems, problems


def _tool_defaults_rows() -> list[tuple[str, str, str]]:
    """(tool, its defaults cell, directpo's cell) of docs/migrating.md's "Another tool's
    defaults" table."""
    rows, table = [], False
    for line in _text(ROOT / "docs" / "migrating.md").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            table = False
        elif cells[0] == "tool" and cells[-1] == "directpo's":
            table = True
        elif table and not set(line) <= set("|-: "):
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def test_the_other_tools_defaults_table_is_the_start_lines() -> None:
    """docs/migrating.md's table of other tools' defaults says what the start line says
    (foreign_defaults.TOOL_DEFAULTS: each setting with its value) and, in its last column,
    DPOConfig's default for that option (bf16's: dtype's)."""
    from directpo.foreign_defaults import TOOL_DEFAULTS

    rows = _tool_defaults_rows()
    assert len(rows) >= 10
    problems, documented = [], set()
    for tool_cell, theirs, ours in rows:
        tool = next(name for name in TOOL_DEFAULTS if tool_cell.startswith(name))
        settings: dict[str, list[object]] = {}
        for tool_default in TOOL_DEFAULTS[tool]:
            for key, value in tool_default.settings:
                settings.setdefault(key, []).append(value)
        pairs = re.findall(r"`([a-z_0-9]+)(?:: ([^`]+))?`", theirs)
        for key, value in pairs:
            if key not in settings:
                continue  # an option the row names beside the setting (warmup_steps, ...)
            documented.add((tool, key))
            real = settings[key]
            said = yaml.safe_load(value) if value else None
            said = float(said) if re.fullmatch(r"\d+(\.\d+)?e-?\d+", str(said)) else said
            if value and not any(callable(r) or r == said for r in real):
                problems.append(f"{tool}: {key}: documented {value!r}, the code says {real!r}")
        first = "dtype" if pairs[0][0] == "bf16" else pairs[0][0]
        problem = _documented_default(ours, _real_default(first))
        problems += [f"{tool}: {first}: {problem}"] if problem else []
    every = {(tool, key) for tool, ds in TOOL_DEFAULTS.items() for d in ds for key, _ in d.settings}
    problems += [f"{tool}: {key}: no row" for tool, key in sorted(every - documented)]
    assert not problems, problems


def test_the_learning_rate_ranges_the_docs_state_are_the_warnings() -> None:
    """Every learning-rate range the docs give ('2e-7 to 5e-6 full', '5e-6 to 5e-4 with
    adapters') is one of health.py's, the source of the warnings and learning_rate's help, and
    the limits above which a run is warned are its limits."""
    from directpo.health import ADAPTER_LIMIT, ADAPTER_RATES, FULL_LIMIT, FULL_RATES

    ranges, limits = [], []
    for path in DOCS:
        text = _text(path).replace("\n", " ")
        ranges += [(path.name, m) for m in re.findall(r"(\d[\d.]*e-\d+) to (\d[\d.]*e-\d+)", text)]
        limits += [(path.name, m) for m in re.findall(r"above ([\d.e-]+) for (full|LoRA)", text)]
    assert len(ranges) >= 3 and len(limits) >= 2, (ranges, limits)
    known = {FULL_RATES, ADAPTER_RATES}
    problems = [
        f"{doc}: {low} to {high}"
        for doc, (low, high) in ranges
        if (float(low), float(high)) not in known
    ]
    expected = {"full": FULL_LIMIT, "LoRA": ADAPTER_LIMIT}
    problems += [
        f"{doc}: above {value} for {kind}"
        for doc, (value, kind) in limits
        if float(value) != expected[kind]
    ]
    assert not problems, problems


def test_the_loss_table_lists_every_loss() -> None:
    text = _text(ROOT / "docs" / "losses.md")
    header, *documented = re.findall(r"^\| `([a-z_]+)` \|", text, re.M)
    assert header == "loss_type"
    assert sorted(documented) == sorted(LOSSES)
    assert f"one of {len(LOSSES)} losses" in _text(ROOT / "README.md")


def _migration_rows() -> list[tuple[str, str, str]]:
    """(theirs, directpo, read) cells of docs/migrating.md's tables of option names."""
    rows, table = [], False
    for line in _text(ROOT / "docs" / "migrating.md").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            table = False
        elif cells[:3] == ["theirs", "directpo", "read"]:
            table = True
        elif table and not set(line) <= set("|-: "):
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def test_the_migration_tables_say_what_the_code_does(monkeypatch) -> None:
    """Each OpenRLHF / torchtune name in docs/migrating.md is read as its row says: renamed to
    the option named, refused (with a hint) or accepted as foreign_names.py reads it, or a
    directpo option of the same name; every option it points to exists, and every name
    foreign_names.py reads is in a row. The rows say a GPU machine's reading (torchtune's
    device: cuda is accepted there and refused without one, as the row says)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    rows = _migration_rows()
    assert len(rows) > 50
    problems, listed = [], set()
    for theirs, ours, read in rows:
        outside = re.sub(r"\([^)]*\)", "", ours)  # (parenthesised: their fields, values)
        options = re.findall(r"`([a-z_0-9]+)`", outside)
        problems += [f"{theirs}: {o} is not an option" for o in options if o not in FIELDS]
        how = read.split()[0].strip(":")
        for name, value in re.findall(r"`([\w.]+)`(?: \(([^)]*)\))?", theirs):
            listed.add(name)
            given = yaml.safe_load(value) if value else True
            ok = {
                "renamed": RENAMED.get(name) == (options[:1] or [None])[0],
                "refused": name in REFUSED and bool(REFUSED[name](given)),
                "accepted": name in REFUSED and not REFUSED[name](given),
                "same": name in FIELDS,
                "component": component_hint(name, {"_component_": "x"}) != GENERIC_COMPONENT,
            }[how]
            problems += [] if ok else [f"{theirs}: not {read}"]
    problems += [f"{name}: no row" for name in (set(RENAMED) | set(REFUSED)) - listed]
    assert not problems, problems


def test_the_design_module_table_lists_every_module() -> None:
    text = _text(ROOT / "docs" / "design.md")
    listed = set(re.findall(r"`([a-z_]+\.py)`", text))
    modules = {p.name for p in (ROOT / "src" / "directpo").glob("*.py")}
    modules -= {"__init__.py", "__main__.py"}
    assert modules - listed == set(), "modules missing from docs/design.md"
    assert listed - modules == set(), "docs/design.md names modules that do not exist"


# metric names the docs mention as former ones ("it was online/reward_mean before")
RETIRED_METRICS = {"online/reward_mean"}


def test_every_documented_metric_is_logged_under_that_name() -> None:
    source = "\n".join(_text(p) for p in (ROOT / "src" / "directpo").rglob("*.py"))
    pattern = r"^(?:rewards|logps|objective|val|online|eval|loss|wpo)/[a-z_]+(?:/[a-z_]+)?$"
    missing = set()
    for path in DOCS:
        for span in _inline_code(_text(path)):
            named = re.match(pattern, span) and span not in RETIRED_METRICS
            if named and f'"{span}"' not in source:
                missing.add(f"{path.name}: {span}")
    assert not missing, sorted(missing)


def test_every_file_and_test_the_docs_point_to_exists() -> None:
    """``src/directpo/losses.py``, ``tests/test_layout.py::test_training_trajectory_...``,
    ``bench/fsdp_memory.py``, links to ``docs/*.md``: each exists (a test name may end in
    ``...``: a prefix)."""
    missing = []
    pattern = r"\b((?:src|tests|bench|examples|docs|img)/[\w./*-]*[\w*])(?:::(\w+))?"
    for path in DOCS:
        for match in re.finditer(pattern, _text(path)):
            name, test = match.groups()
            if not (list(ROOT.glob(name)) or list(path.parent.glob(name))):
                missing.append(f"{path.name}: {name}")
            elif test and not re.search(rf"^def {test}", _text(ROOT / name), re.M):
                missing.append(f"{path.name}: {name}::{test}")
    assert not missing, missing


def _heading_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_section_a_docs_link_jumps_to_is_a_heading() -> None:
    """``[...](docs/performance.md#held-out-metrics-in-float32)``, ``[above](#1-train-on-your-
    own-file)``: a renamed or moved section leaves such a link landing at the page's top; each
    anchor must be a heading of the file it names."""
    links, wrong = 0, []
    for path in DOCS:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", _text(path)):
            linked = (path.parent / target) if target else path
            headings = re.findall(r"^#+ (.+)$", _text(linked), re.M)
            links += 1
            if anchor not in {_heading_anchor(heading) for heading in headings}:
                wrong.append(f"{path.name}: {target}#{anchor}")
    assert links >= 5, links
    assert not wrong, wrong


def test_the_readme_links_every_page_of_docs() -> None:
    """A page under docs/ that README.md does not link is one a new user never finds (README
    is where they start); each is linked from it."""
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)", _text(ROOT / "README.md")))
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert len(pages) >= 7
    assert not pages - linked, sorted(pages - linked)


def test_every_test_the_docs_name_alone_exists() -> None:
    """docs/performance.md names the tests that pin a measured change by their name alone
    (`test_score_and_rank_call_the_tokenizer_once_per_batch_of_rows`), without their file:
    each is a test function somewhere under tests/ (or `dataset_mixture`'s `test_split_size`),
    so that a renamed test does not leave the docs pointing at nothing."""
    defined = set()
    for test_file in (ROOT / "tests").rglob("*.py"):
        defined |= set(re.findall(r"^\s*def (test_\w+)", _text(test_file), re.M))
    named = {
        (path.name, span)
        for path in DOCS
        for span in _inline_code(_text(path))
        if re.fullmatch(r"test_\w+", span)
    }
    assert len(named) >= 3  # the docs do name tests so
    keys = {"test_split_size"}  # dataset_mixture's held-out share, not a test
    missing = [f"{doc}: {name}" for doc, name in sorted(named) if name not in defined | keys]
    assert not missing, missing


def test_every_place_an_options_help_sends_a_reader_exists() -> None:
    """``dataset_mixture``'s help (``directpo train --help``) said "See README (Data)", a
    section the README does not have: each ``README (Section)`` a command's option help names
    is a README heading, and each ``docs/NAME.md`` it names exists."""
    from directpo.options import option_help

    headings = re.findall(r"^#+ (.+)$", _text(ROOT / "README.md"), re.M)
    wrong = []
    for name, command in COMMANDS.items():
        for option, text, _ in option_help(command.options):
            for section in re.findall(r"README \(([^)]+)\)", text):
                if not any(section in heading for heading in headings):
                    wrong.append(f"{name} --{option}: README ({section})")
            wrong += [
                f"{name} --{option}: {doc}"
                for doc in re.findall(r"docs/\w+\.md", text)
                if not (ROOT / doc).exists()
            ]
    assert not wrong, wrong


def test_the_example_configs_load() -> None:
    """examples/*.yaml, as the README runs them (the model given by a flag)."""
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert examples
    for example in examples:
        config = load_config(str(example), {"model_name_or_path": "path/to/model"})
        assert config.output_dir, example.name


def test_the_example_configs_start_without_a_note() -> None:
    """A new user's first run is an example recipe: its start says nothing of the recipe itself
    (smollm2_dpo.yaml's lr_scheduler_type: constant with warmup_steps: 2 said 'TRL's constant
    would not warm up' at every start; constant_with_warmup is the schedule it trains)."""
    from directpo.start_notes import start_notes

    for example in sorted((ROOT / "examples").glob("*.yaml")):
        config = load_config(str(example), {"model_name_or_path": "path/to/model"})
        steps = config.max_steps if config.max_steps > 0 else 100
        assert start_notes(config, steps, lora=bool(config.lora_r)) == [], example.name


def test_the_bench_scripts_the_docs_run_import_as_written() -> None:
    """``python bench/gpu_smoke.py features`` (docs/performance.md) stopped at "No module named
    'tiny'" unless PYTHONPATH named tests/: each script the docs run finds its own helpers
    (its top level runs in a fresh interpreter from another folder, with only src/ on the
    path, as an installed directpo; nothing under ``__main__`` runs)."""
    import os
    import subprocess
    import sys

    scripts = sorted(
        {name for path in DOCS for name in re.findall(r"python (bench/\w+\.py)", _text(path))}
    )
    assert "bench/gpu_smoke.py" in scripts
    load = (
        "import importlib.util, sys\n"
        "for n, path in enumerate(sys.argv[1:]):\n"
        "    spec = importlib.util.spec_from_file_location(f'bench_{n}', path)\n"
        "    sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "import gc\n"
        "gc.freeze()  # (the exit's collections of torch's heap: seconds, not tested)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", load, *(str(ROOT / s) for s in scripts)],
        cwd=ROOT.parent, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_python_snippet_compiles_and_names_what_exists() -> None:
    """A README / docs Python block is copied into a notebook as written: it compiles, each
    module it imports and each name it imports from one is there, and every attribute it
    reads of train()'s result (``result.policy``, ``result.stopped_by``) or of ImplicitReward
    (``ImplicitReward.from_run``), in prose too, is one they have."""
    import ast
    import importlib

    import directpo
    from directpo.finish import TrainResult

    has = {
        "result": {f.name for f in dataclasses.fields(TrainResult)} | set(dir(TrainResult)),
        "ImplicitReward": set(dir(directpo.ImplicitReward)),
    }
    wrong, blocks = [], 0
    for path in DOCS:
        text = _text(path)
        for body in _blocks(text, ("python", "py")):
            blocks += 1
            tree = ast.parse(body, filename=path.name)  # a SyntaxError names the block's line
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        importlib.import_module(alias.name)
                elif isinstance(node, ast.ImportFrom) and node.module:
                    module = importlib.import_module(node.module)
                    wrong += [
                        f"{path.name}: from {node.module} import {alias.name}"
                        for alias in node.names
                        if not hasattr(module, alias.name)
                    ]
        for owner, attribute in re.findall(r"(?<![\w.])(result|ImplicitReward)\.(\w+)", text):
            if attribute not in has[owner]:
                wrong.append(f"{path.name}: {owner}.{attribute}")
    assert blocks >= 3  # the extraction itself works
    assert not wrong, wrong
