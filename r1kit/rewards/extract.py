"""The final answer in a model's response, and the reference answer in a dataset's solution.

``strip_answer(response)`` is what every comparison of a prediction starts from. It reads, in
this order (the first that applies wins; each later step works on what the earlier ones left):

1. Chat framing: a leading role header (``<|im_start|>assistant``) is dropped and the text is cut
   at the first special token after it (``<|im_end|>``, ``<|im_start|>user ...``, ``<|eot_id|>``,
   ``</s>``, ``<｜end▁of▁sentence｜>``): what follows is another turn (GLM's
   ``<|begin_of_box|>...<|end_of_box|>`` is a box, step 4). With a ``</think>``, only the text
   after the last one counts (unless it is empty).
2. The last ``<answer>...</answer>`` pair: its content (the accuracy reward's path).
3. A GSM8K-style ``#### 72``: the text after the last ``####``.
4. The last ``\\boxed{}`` / ``\\fbox{}``; a run of boxes that ends the answer and is joined by
   commas, "and", "or", ``x =`` or nothing is one list (``\\boxed{2} and \\boxed{-1}`` ->
   ``"2, -1"``) -- unless a lead-in (step 5) comes after the last box: the later commitment wins.
5. The last lead-in "final answer is", "answer is", "Answer:" (or "Answer" straight before
   math; also 答案是 / 答案：, "réponse est", "respuesta:", "Antwort:", "Ответ:"): the ``$...$``,
   ``$$...$$``, ``\\(...\\)`` or ``\\[...\\]`` right after it, else the rest of its sentence;
   one that judges instead ("this answer is correct, ...") is passed over.
6. Then, on what is left: sign-offs ("I hope it is correct."), a leading "so"/"thus"/
   "therefore"/"hence", bold markers and math delimiters around the whole are removed.
7. If that is still prose (two or more words that are not units, number words or "and"/"or",
   in any script; or four or more Chinese/Japanese/Korean characters): the last sentence that
   holds a value, and in it the last value -- or, for the words a lead-in introduced, the first
   sentence and its first value. Values are math spans that hold more than a name (``$120$``,
   not ``$ABCD$``), LaTeX without delimiters (``\\frac{63}{400}``), numbers (``3/5``, ``1,250``,
   ``-2.5``, ``25%``), and only where there are none of those, numbers in words. Values joined by
   "or"/"and"/commas stay together: "5 or 6" is a hedge, not 6. A value right after "not" is
   denied, not given ("The answer is not 12."). Prose with no value is kept
   whole (a text answer such as "no solution").

``gold_answer`` reads a reference the way datasets store it (``#### 72``, a MATH solution's last
box). ``extract_answer`` is the stricter reading of the accuracy reward: an ``<answer>`` tag or a
box, nothing else unless asked. All of it is linear in the length of the text.
"""

from __future__ import annotations

import re
import unicodedata

from r1kit.rewards.format import ANSWER_CLOSE, ANSWER_OPEN
from r1kit.rewards.number_words import NUMBER_WORDS, words_to_number

_ANY_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")
_BOX_COMMANDS = ("boxed", "fbox")
# What may stand between two boxes that together are one answer: "\boxed{1}, \boxed{2}",
# "$\boxed{1}$ and $\boxed{2}$".
_BOX_SEPARATOR = re.compile(
    r"[\s$,;]*(?:(?:and|or|,|;)[\s$,;]*)?(?:[A-Za-z](?:_\{?\w+\}?)?\s*=\s*)?[\s$]*", re.IGNORECASE
)  # also "x = \boxed{2} and x = \boxed{3}"
_SPACING = re.compile(r"\\text\{([^{}]*)\}|\\q?quad|\\[,;: ]")


def _boxes(text: str) -> list[tuple[int, int, int]]:
    """Every complete ``\\boxed{...}``/``\\fbox{...}`` as ``(command_start, content_start,
    content_end)``, in order of ``content_start``. One left-to-right pass; escaped braces
    ``\\{ \\}`` do not count, an unclosed box is left out, ``\\boxed 5`` boxes the token ``5``."""
    found: list[tuple[int, int, int]] = []
    stack: list[tuple[int, int]] = []  # per open brace: (command start, content start), or -1s
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            cmd = next((b for b in _BOX_COMMANDS if text.startswith(b, i + 1)), None)
            if cmd is None:
                i += 2  # skip the escaped character: "\{" is a literal brace
                continue
            j = i + 1 + len(cmd)
            k = j
            while k < n and text[k] == " ":
                k += 1
            if k < n and text[k] == "{":
                stack.append((i, k + 1))
                i = k + 1
                continue
            if j < k < n:  # "\boxed 5": the token up to whitespace or "$"
                end = k
                while end < n and not text[end].isspace() and text[end] != "$":
                    end += 1
                found.append((i, k, end))
                i = end
                continue
            i = j
            continue
        if c == "{":
            stack.append((-1, -1))
        elif c == "}" and stack:
            cmd_start, start = stack.pop()
            if start >= 0:
                found.append((cmd_start, start, i))
        i += 1
    found.sort(key=lambda box: box[1])
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces, stripped.

    Nested braces are matched (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``), escaped braces
    ``\\{ \\}`` do not count, and an unclosed box (a truncated completion) is ignored in favour of
    the last complete one. ``\\boxed 5`` (no braces) gives ``5``. One left-to-right pass.
    """
    boxes = _boxes(text)
    if not boxes:
        return None
    _, start, end = boxes[-1]
    return text[start:end].strip() or None


def final_boxed(text: str) -> str | None:
    """Like ``last_boxed``, but a run of boxes that ends the answer and is separated only by
    commas, "and" or "or" counts as one list: ``x=\\boxed{1}, \\boxed{2}`` -> ``"1, 2"``."""
    boxes = [b for b in _boxes(text) if text[b[1] : b[2]].strip()]
    if not boxes:
        return None
    # outermost boxes only: a box inside another box is part of that box's content
    outer: list[tuple[int, int, int]] = []
    for box in sorted(boxes, key=lambda b: b[0]):
        if outer and box[0] < outer[-1][2]:
            continue
        outer.append(box)
    parts = [outer[-1]]
    for box in reversed(outer[:-1]):
        gap = _SPACING.sub(lambda m: f" {m.group(1) or ''} ", text[box[2] + 1 : parts[-1][0]])
        if not _BOX_SEPARATOR.fullmatch(gap):  # "\boxed{1}\boxed{2}", "\boxed{1}, \boxed{2}"
            break
        parts.append(box)
    return ", ".join(text[s:e].strip() for _, s, e in reversed(parts))


def answer_tag_content(response: str) -> str | None:
    """Text inside the last ``<answer>...</answer>`` pair, stripped; None if there is none."""
    close = response.rfind(ANSWER_CLOSE)
    if close < 0:
        return None
    start = response.rfind(ANSWER_OPEN, 0, close)
    if start < 0:
        return None
    return response[start + len(ANSWER_OPEN) : close].strip()


def extract_answer(response: str, fallback_last_number: bool = False) -> str | None:
    """The final answer a response commits to.

    The last ``<answer>`` content (unwrapping a ``\\boxed{}`` inside it), else the last
    ``\\boxed{}`` anywhere, else -- only if ``fallback_last_number`` -- the last number in the text.
    Boxes written as one list (``\\boxed{1}, \\boxed{2}``) are kept together: ``"1, 2"``.
    """
    content = answer_tag_content(response)
    if content:
        return _unbox(content)
    if final_boxed(response) is not None:
        return _unbox(response)
    if fallback_last_number:
        numbers = _ANY_NUMBER.findall(response)
        if numbers:
            return numbers[-1].replace(",", "")
    return None


def _unwrap_math(text: str) -> str:
    """``$x$``, ``$$x$$``, ``\\(x\\)``, ``\\[x\\]`` -> ``x`` (only when they wrap all of it)."""
    s = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            inner = s[len(left) : -len(right)]
            if left != "$" or "$" not in inner:
                return inner.strip()
    return s


def _unbox(text: str) -> str:
    for _ in range(3):  # \boxed{\boxed{5}} -> 5
        if "\\boxed" not in text and "\\fbox" not in text:
            break
        inner = final_boxed(text)
        if inner is None or inner == text:
            break
        text = inner
    return text


def gold_answer(gold: str) -> str:
    """The final answer inside a reference as datasets store it.

    GSM8K solutions end in ``#### 72`` (the text after the last ``####``); MATH solutions box
    their answer (the last ``\\boxed{}``); anything else is the answer itself. Math delimiters
    around the whole answer are dropped.
    """
    text = str(gold).strip()
    _, sep, tail = text.rpartition("####")
    if sep and tail.strip():
        text = tail.strip()
    return _unwrap_math(_unbox(text))




# Special tokens of chat templates: what follows one is another turn, not the answer.
_CHAT_TOKEN = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>|<｜[^｜<>\n]{1,40}｜>|</s>|<eos>|<end_of_turn>")
_ROLE = re.compile(r"\s*(?:assistant|model)\b\s*(?:<\|end_header_id\|>)?", re.IGNORECASE)
_THINK_CLOSE = "</think>"
# GLM's box tokens: "<|begin_of_box|>12<|end_of_box|>" is \boxed{12}, not the end of the turn.
_BOX_TOKENS = ("<|begin_of_box|>", "<|end_of_box|>")
# "this answer is correct": a lead-in that judges an answer instead of giving one
_DENIAL = re.compile(r"(?:\bnot|n't|\bnever)\s*(?:equal\s+to\s+|be\s+)?\$*\s*$", re.IGNORECASE)
_JUDGEMENT = re.compile(r"(?:correct|incorrect|wrong|right|true|false|valid|invalid|not)\b", re.IGNORECASE)
# "The final answer is", "the answer is:", "Answer:", "answer =" (group "is" set when a
# connector follows "answer"; without one, only math may follow).
_LEAD_IN = re.compile(
    r"(?:\*\*)?(?:(?:final\s+)?answer(?:\*\*)?(?P<is>\s+is\b\s*:?|\s*[:=]|\s+would\s+be\b|\s+will\s+be\b)?"
    # the same in other languages models answer in: 答案是 / 答案：, réponse :, respuesta:, ...
    r"|(?P<intl>答案\s*(?:是|为)?\s*[:：]?|réponse\s*(?:est\b|:)|respuesta\s*(?:es\b|:)|antwort\s*(?:ist\b|:)|ответ\s*:))"
    r"(?:\*\*)?\s*",
    re.IGNORECASE,
)
_OPENERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_SIGN_OFF = re.compile(
    r"(?:\s*(?:I hope (?:it|this) is correct|Hope (?:it|this) helps|Let me know if[^.!]*)[.!]?)+\s*$", re.IGNORECASE
)
_CONNECTIVE = re.compile(r"^\s*(?:so|thus|therefore|hence|finally)\s*,?\s+", re.IGNORECASE)
_OPENER = re.compile(r"\$\$|\\\[|\\\(|(?<!\\)\$")
# A sentence ends at ". ", "! ", "? " or a line break; "3.5" and "e.g." inside math do not end one.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[।。！？])\s*|\n+")
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.])[-−]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?:\s*\\?%)?(?!\d)"
)
# LaTeX without delimiters: "\frac{63}{400}", "2\sqrt{3}", "\dfrac{\sqrt{3}}{2}".
_BARE_LATEX = re.compile(
    r"[-+]?\d*\\(?:[dt]?frac|sqrt|binom|pi)(?:\s*(?:\{(?:[^{}]|\{[^{}]*\})*\}|\[[^\]]*\]|\d))*"
)
# A math span that only names something: "$ABCD$", "$n$", "$f(x)$", "$a_1$".
_NAME_ONLY = re.compile(r"[A-Za-z]+(?:_\{?\w+\}?)?(?:\([A-Za-z, ]*\))?")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_BARE_NUMBER = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?")
_JOINED = re.compile(r"\s*(?:,\s*(?:or|and)?|(?:or|and))\s*", re.IGNORECASE)
# Words that do not make a text prose: connectors, units and the like after a number.
# Function names written without a backslash, calculator / sympy style ("cos(x)^2 + sin(x)^2"):
# math, not words (also read as LaTeX by ``equivalence.normalize``).
PLAIN_FUNCTION = re.compile(
    r"(?<![\\A-Za-z])(arcsin|arccos|arctan|sinh|cosh|tanh|sin|cos|tan|sec|csc|cot|ln|log|exp|sqrt)(?=\s*\()"
)
_NOT_PROSE = re.compile(
    r"(?:and|or|of|per|sq|square|cubic|units?|degrees?|percent|dollars?|cents?|euros?|meters?|metres?|"
    r"cm|mm|km|kg|mg|ft|feet|foot|inch(?:es)?|in|yd|mi|miles?|hours?|hrs?|minutes?|min|seconds?|sec|"
    r"days?|weeks?|years?|grams?|liters?|litres?|ml|mL|pm|am|AM|PM|mph)",
    re.IGNORECASE,
)


def _token_boxes(text: str) -> str:
    """``<|begin_of_box|>X<|end_of_box|>`` -> ``\\boxed{X}`` (one pass, left to right)."""
    begin, end = _BOX_TOKENS
    out, i = [], 0
    while (a := text.find(begin, i)) >= 0 and (b := text.find(end, a + len(begin))) >= 0:
        out += [text[i:a], "\\boxed{", text[a + len(begin) : b], "}"]
        i = b + len(end)
    return "".join(out) + text[i:]


def _chat_answer(text: str) -> str:
    """Step 1: the assistant turn's text, without template tokens or what follows them."""
    text = _token_boxes(text)
    while True:
        m = _CHAT_TOKEN.match(text.lstrip())
        if not m:
            break
        text = text.lstrip()[m.end():]
        role = _ROLE.match(text)
        if role:
            text = text[role.end():]
    m = _CHAT_TOKEN.search(text)
    if m:
        text = text[: m.start()]
    close = text.rfind(_THINK_CLOSE)
    if close >= 0 and text[close + len(_THINK_CLOSE):].strip():
        text = text[close + len(_THINK_CLOSE):]
    return text.strip()


def math_spans(text: str) -> list[tuple[int, int, str]]:
    """Every ``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]`` as ``(start, end, content)``, left
    to right, not nested. Linear time: once a kind of delimiter has no closer after some point,
    none of its later openers is looked at again (``\\[`` repeated 50,000 times stays cheap)."""
    closers = dict(_OPENERS)
    dead: set[str] = set()
    spans, i = [], 0
    while True:
        m = _OPENER.search(text, i)
        if m is None:
            return spans
        left = m.group(0)
        if left in dead:
            i = m.end()
            continue
        end = m.end()
        while True:
            end = text.find(closers[left], end)
            if end < 0 or left != "$" or text[end - 1] != "\\":
                break
            end += 1  # "\$" inside "$...$" is a dollar sign
        if end < 0:
            dead.add(left)
            i = m.end()
            continue
        if end > m.end():
            spans.append((m.start(), end + len(closers[left]), text[m.end() : end].strip()))
        i = end + len(closers[left])


def _after_lead_in(text: str, start: int = 0) -> str | None:
    """Step 5: what the last "answer is" / "Answer:" (at or after ``start``) introduces; None
    without one."""
    starts = {begin: content for begin, _, content in math_spans(text)}
    for m in reversed(list(_LEAD_IN.finditer(text, start))):
        if m.end() in starts:
            return starts[m.end()]
        if _JUDGEMENT.match(text, m.end()):
            continue
        if (m.group("is") or m.group("intl")) and m.end() < len(text.rstrip()):
            end = _SENTENCE_END.search(text, m.end())
            return text[m.end() : end.start() if end else len(text)]
    return None


def _words(text: str) -> list[str]:
    """The words of ``text`` outside math, LaTeX commands and ``\\text{}``."""
    bare, last = [], 0
    for start, end, _ in math_spans(text):
        bare.append(text[last:start])
        last = end
    bare = " ".join([*bare, text[last:]])
    bare = re.sub(r"\\text\{([^{}]*)\}", r" \1 ", bare)  # text is words: "\text{The answer is } 17"
    bare = re.sub(r"\\(?:begin|end|operatorname|math[a-z]+)\s*\{[^{}]*\}|\\[A-Za-z]+", " ", bare)
    bare = PLAIN_FUNCTION.sub(" ", bare)
    words = []
    for token in re.split(r"[\s,;:!?()\[\]{}.\"*/=+<>|]+", bare):
        token = token.strip("'’-_`")
        # letters of any script, with their combining marks (Devanagari vowel signs are not \w)
        if len(token) >= 2 and all(c.isalpha() or unicodedata.category(c).startswith("M") or c in "'’-" for c in token):
            words.append(token)
    return words


def is_prose(text: str) -> bool:
    """Two or more words that are not units, number words or connectors: a sentence around an
    answer rather than an answer ("12 red apples" is prose, "5 square feet" is not)."""
    words = [w for w in _words(text) if not _NOT_PROSE.fullmatch(w) and words_to_number(w) is None]
    return len(words) >= 2 or len(_CJK.findall(text)) >= 4  # Chinese and Japanese need no spaces


def _candidates(sentence: str) -> list[tuple[int, int, str]]:
    """Values in a sentence, as ``(start, end, answer text)`` in order: math spans that hold more
    than a name (``$120$``, ``$x+1$``; not ``$ABCD$`` or ``$f(x)$``), LaTeX written without
    delimiters (``\frac{63}{400}``) and numbers; numbers in words only when there are none of
    those."""
    found = [(a, b, c) for a, b, c in math_spans(sentence) if not _NAME_ONLY.fullmatch(c)]
    taken = [(a, b) for a, b, _ in math_spans(sentence)]

    def free(m: re.Match) -> bool:
        return not any(a <= m.start() < b for a, b in taken)

    for m in _BARE_LATEX.finditer(sentence):
        if free(m):
            found.append((m.start(), m.end(), m.group(0)))
            taken.append((m.start(), m.end()))
    for m in _NUMBER.finditer(sentence):
        if free(m):
            found.append((m.start(), m.end(), m.group(0)))
    # "The answer is not 12.": a denied value is no answer
    found = [(a, b, c) for a, b, c in found if not _DENIAL.search(sentence, max(0, a - 24), a)]
    if found:  # "there are 12 sequences for the three conditions": digits over words
        return sorted(found)
    for m in NUMBER_WORDS.finditer(sentence):
        if words_to_number(m.group(0)) is not None:
            found.append((m.start(), m.end(), m.group(0)))
    return sorted(found)


def _value(sentence: str, first: bool = False) -> str | None:
    """The last (or ``first``) value of a sentence, with the values joined to it by "or"/"and"/
    commas (a hedge "5 or 6", a list "1, 2, and 3" stay whole)."""
    found = _candidates(sentence)
    if not found:
        return None
    lo = hi = 0 if first else len(found) - 1
    while lo > 0 and _JOINED.fullmatch(sentence[found[lo - 1][1] : found[lo][0]]):
        lo -= 1
    while hi < len(found) - 1 and _JOINED.fullmatch(sentence[found[hi][1] : found[hi + 1][0]]):
        hi += 1
    if lo == hi:
        return found[lo][2].strip()
    return sentence[found[lo][0] : found[hi][1]].strip().rstrip(".")


def _sentences(text: str) -> list[str]:
    """``text`` cut at sentence ends that are not inside math (``$\frac{2}{1}.$$ Then``)."""
    spans = [(a, b) for a, b, _ in math_spans(text)]
    cuts, last = [], 0
    for m in _SENTENCE_END.finditer(text):
        if not any(a < m.start() < b for a, b in spans):
            cuts.append(text[last : m.start()])
            last = m.end()
    cuts.append(text[last:])
    return [c for c in cuts if c.strip()]


def _answer_in_prose(text: str, introduced: bool = False) -> str:
    """Step 7: the answer a prose text ends on (the text itself when it holds none); for the
    words a lead-in introduced ("Answer: he pays 220 $ within 12 months") the first value."""
    sentences = _sentences(text)
    for sentence in sentences if introduced else reversed(sentences):
        value = _value(sentence, first=introduced)
        if value:
            return value
    return text


def _tidy(text: str) -> str:
    """Step 6: sign-offs, a leading connective, bold and math delimiters around the whole."""
    for _ in range(2):  # "So, $5$." -> "$5$" -> "5"
        text = _SIGN_OFF.sub("", text).strip()
        text = _CONNECTIVE.sub("", text).strip()
        if text.startswith("**") and text.endswith("**"):
            text = text[2:-2].strip()
        text = re.sub(r"(?<=[\w$)}\]])\s*[.。]$", "", text).strip()  # a sentence's full stop
        text = _unwrap_math(text)
    return text


def strip_answer(prediction: str, prose: bool = True) -> str:
    """A model's final answer without its wrapping: steps 1-7 of this module's docstring
    (``prose=False``: steps 1-6, for readers of their own such as multiple-choice letters).

    ``"... The final answer is $1{,}250$. I hope it is correct."`` -> ``"1{,}250"``;
    ``"Therefore, the probability is 3/5."`` -> ``"3/5"``; ``"<answer> 7 </answer>"`` -> ``"7"``.
    """
    text = _chat_answer(str(prediction))
    content = answer_tag_content(text)
    if content:
        text = content
    _, sep, tail = text.rpartition("####")  # a GSM8K-style "#### 72"
    if sep and tail.strip():
        text = tail.strip()
    if _BARE_NUMBER.fullmatch(text):  # the common case, nothing to unwrap
        return text
    boxes = _boxes(text)
    # a lead-in after the last box wins: "... = \boxed{255} ... The final answer is $10,455$."
    introduced = _after_lead_in(text, start=max((end for _, _, end in boxes), default=0))
    if introduced is None and final_boxed(text) is not None:
        text = _unbox(text)
    elif introduced is not None:
        text = introduced
    text = _tidy(text)
    if prose and is_prose(text):
        text = _tidy(_answer_in_prose(text, introduced=introduced is not None))
    return text.strip()
