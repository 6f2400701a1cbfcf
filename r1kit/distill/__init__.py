"""Distillation, as DeepSeek-R1 built its students: traces from a teacher (``generate``: ``r1kit
generate``), rejection sampling of verified, well-formed, language-consistent traces (``filter``:
``r1kit distill filter``), preference pairs for DPO (``pairs``: ``r1kit distill pairs``), and SFT
of a student on the kept traces (``student``: ``r1kit distill CONFIG``). ``traces`` owns the
trace-file layout they share."""
