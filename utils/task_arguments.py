"""Ports as arguments for Invoke tasks: ``invoke ports.cleanup 8000 8001``.

Invoke has no variadic arguments, so before it parses a task's words the bare ones after
a port task are turned into the ``--port`` options it knows. Only ``tasks.py`` uses this.
"""

from __future__ import annotations

from invoke.collection import Collection


def ports_as_options(
    words: list[str], valued: dict[str, set[str]], port_tasks: tuple[str, ...]
) -> list[str]:
    """``ports.cleanup 8000 8001 --grace 2`` -> ``ports.cleanup --port 8000 --port 8001
    --grace 2``.

    ``valued`` maps each task name (and alias) to its options that take a value (long
    and short, as Invoke's parser knows them). Inside a port task, a bare word - or any
    word after ``--``, or a negative number (for a one-line exit-2 error) - is a port;
    in every task the value after a value-taking option stays what it was, even if it
    looks like a task name.
    """
    rewritten: list[str] = []
    task: str | None = None
    words = list(words)
    while words:
        word = words.pop(0)
        flag = word.partition("=")[0]
        in_port_task = task in port_tasks
        if task is not None and word.startswith("-") and flag in valued[task]:
            rewritten.append(word)
            if "=" not in word and words:
                rewritten.append(words.pop(0))
        elif in_port_task and word == "--":
            rewritten += [part for port in words for part in ("--port", port)]
            break
        elif in_port_task and word[:1] == "-" and word[1:].isdigit():
            rewritten += ["--port", word]
        elif word in valued:
            task = word
            rewritten.append(word)
        elif in_port_task and not word.startswith("-"):
            rewritten += ["--port", word]
        else:
            rewritten.append(word)
    return rewritten


def accept_ports_as_arguments(namespace: Collection, port_tasks: tuple[str, ...]) -> None:
    """Rewrite the words Invoke has yet to parse, once it has loaded the tasks file.

    Invoke parses its own options, loads this collection, then parses the task words it
    kept in ``program.core.unparsed``: the one moment to turn bare ports into options.
    A program that imports the tasks without running Invoke is left alone.
    """
    from invoke import main as invoke_main

    core = getattr(invoke_main.program, "core", None)
    unparsed = getattr(core, "unparsed", None)
    if isinstance(unparsed, list):
        valued: dict[str, set[str]] = {}
        # Building the contexts consumes each task's help (Invoke pops it into the
        # arguments), so Invoke's own --help would show none: keep a copy to put back.
        helps = {name: dict(namespace[name].help) for name in namespace.task_names}
        for context in namespace.to_contexts():
            flags = {
                f"-{name}" if len(name) == 1 else f"--{name}"
                for argument in context.args.values()
                if argument.takes_value
                for name in argument.names
            }
            for name in (context.name, *context.aliases):
                valued[str(name)] = flags
        for name, help_texts in helps.items():
            namespace[name].help = help_texts
        unparsed[:] = ports_as_options(unparsed, valued, port_tasks)
        # Invoke keeps the words after `--` apart (its "remainder"); after a port task
        # they are ports too, not a request for every port of the project.
        remainder = getattr(core, "remainder", "")
        tasks_named = [word for word in unparsed if word in valued]
        if core is not None and remainder and tasks_named and tasks_named[-1] in port_tasks:
            unparsed += [part for port in remainder.split() for part in ("--port", port)]
            core.remainder = ""
