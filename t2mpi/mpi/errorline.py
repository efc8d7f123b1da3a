"""The MPI's own error line in what a failed launch wrote on stderr: the line a person needs in a
job's reason, not the generic abort banner that follows it.

    MPICH:    Abort(270681487): Fatal error in internal_Init_thread: Other MPI error, error stack:
              internal_Init_thread(71)..........: MPI_Init_thread(...) failed
              ...
              MPIDI_OFI_create_vci_context(1058): OFI call ep_enable failed (default nic=tcp: Bad file descriptor)
      ->  Fatal error in internal_Init_thread: Other MPI error: OFI call ep_enable failed (default nic=tcp: Bad file descriptor)

    Open MPI: its help blocks, between lines of dashes; the first sentence of the most specific one
      ->  MPI_INIT has failed because at least one MPI process is unreachable from another.

    A node the launcher could not start on (its network down): the scheduler's own launch error,
    not the MPI's banner after it
              srun: error: Task launch for StepId=125.0 failed on node n3: Communication connection failure
      ->  srun: Task launch for StepId=125.0 failed on node n3: Communication connection failure

mpi_error_line() is pure: a function of the lines; None when none of them is an MPI's error.
"""

from __future__ import annotations

import re

LONGEST = 400  # characters of a reason's MPI line
_MPICH_FATAL = r"Fatal error in (?:P?MPI_)?\w+: .*"
_MPICH_STACK = r"\s*\w+\(\d+\)\.*:\s?(.*)"
_OMPI_RULE = r"\s*-{20,}\s*"
# Open MPI's generic banners: said after the specific block, or with no cause in their first sentence
_OMPI_GENERIC = (
    "It looks like MPI_INIT failed for some reason",
    "has exited due to process",
    "Your MPI job is now going",
)
# a scheduler's launcher (srun, under Hydra or Open MPI's Slurm launch) that could not start a node's part
_LAUNCH_FAILED = r"(srun): error: (Task launch for \S+ failed on node .*)"
_WORDS = ("MPI_Init", "MPI_INIT", "Fatal error", "ep_enable failed", "OFI call", "UCX  ERROR", "UCX ERROR", "PMI")


def mpi_error_line(lines: list[str]) -> str | None:
    """The most telling line of an MPI's error output in `lines` (stderr, oldest first), or None."""
    found = _mpich(lines) or _open_mpi(lines) or _launch_failed(lines) or _worded(lines)
    if found is None:
        return None
    found = " ".join(found.split())
    return found if len(found) <= LONGEST else found[: LONGEST - 1] + "…"


def _mpich(lines: list[str]) -> str | None:
    """The last fatal error with the deepest message of its error stack."""
    for i in range(len(lines) - 1, -1, -1):
        m = re.search(_MPICH_FATAL, lines[i])
        if m is None:
            continue
        head = m.group(0).removesuffix(", error stack:").rstrip(":")
        deepest = None
        for line in lines[i + 1 :]:
            frame = re.fullmatch(_MPICH_STACK, line)
            if frame is None:
                break
            if frame.group(1).strip():
                deepest = frame.group(1).strip()
        return f"{head}: {deepest}" if deepest else head
    return None


def _open_mpi(lines: list[str]) -> str | None:
    """The first sentence of the first help block that says a cause (not a generic banner);
    else the detail lines of the generic MPI_INIT banner (its `-->` line and the one above)."""
    blocks, current = [], None  # a rule opens a block, the next one closes it
    for line in lines:
        line = line.replace("\x00", "")
        if re.fullmatch(_OMPI_RULE, line):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line.strip())
    paragraphs = [_first_paragraph(block) for block in blocks]
    for text in paragraphs:
        if text and not text.startswith("WARNING") and not any(g in text for g in _OMPI_GENERIC):
            return _first_sentence(text)
    for block in blocks:
        for j, line in enumerate(block):
            if line.startswith("-->") and j:
                return f"{block[j - 1]} {line}"
    return None


def _first_paragraph(block: list[str]) -> str:
    words = []
    for line in block:
        if not line:
            if words:
                break
            continue
        words.append(line)
    return " ".join(words)


def _first_sentence(text: str) -> str:
    m = re.match(r"(.+?[.;])(\s|$)", text)
    return m.group(1) if m else text


def _launch_failed(lines: list[str]) -> str | None:
    """The first node a scheduler's launcher said it could not start on."""
    for line in lines:
        m = re.search(_LAUNCH_FAILED, line)
        if m is not None:
            return f"{m.group(1)}: {m.group(2)}"
    return None


def _worded(lines: list[str]) -> str | None:
    """The last line that names MPI init, a fatal error, an OFI or UCX call, or PMI (a Python
    traceback's last line is no MPI's: the caller keeps the last line then)."""
    for word in _WORDS:
        for line in reversed(lines):
            if word in line:
                return line.strip().lstrip("[*] ").strip() or None
    return None
