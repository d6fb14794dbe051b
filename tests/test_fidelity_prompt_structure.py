"""Our prompt texts are our own words; under `reference` their structure is the release's.

Release structures, read from GitHub multimodal-art-projection/I-SHEEP:
  meta-prompt  seed_ppl/prompt.txt:1-14 (intro; blank; requirements title; items 1-9, the 9th
               on outputs under 100 words; blank; "List of 20 tasks:") + "\\n", then
               seed_ppl/generate_instruction.py:84-92 (blocks "###\\nN. Instruction: ..\\n
               N. Input:\\n..\\n", then "###\\n6. Instruction:")
  judge        seed_ppl/evaluate_prompt_parameters.py:112,132: one line holding the pair
               ("... Instruction: {instruction} {input} Response: {output}."), "\\n", then one
               line: criteria (what earns 1, what earns 10), the '<score>||<explanation>'
               format, the cue, a trailing space.
"""
import random
import re

from engine.selfalign.assessment_prompts import ASSESSMENT_KINDS, build_assessment_prompt
from engine.selfalign.scores import parse_score
from engine.selfalign.seeds import SeedTask
from engine.selfalign.synthesis import build_meta_prompt, meta_prompt_header

SEEDS = [SeedTask(f"Do task number {k} well.", "" if k % 2 else f"input {k}", f"out {k}", str(k))
         for k in range(8)]


def test_reference_meta_prompt_has_the_release_skeleton():
    prompt = build_meta_prompt(SEEDS, random.Random(0), output_requirement=True)
    lines = prompt.split("\n")
    assert lines[0] and lines[1] == "" and lines[2].endswith(":")            # prompt.txt:1-3
    assert [line.split(". ")[0] for line in lines[3:12]] == [str(k) for k in range(1, 10)]
    assert "100 words" in lines[11] and "output" in lines[11].lower()       # prompt.txt:12
    assert lines[12:16] == ["", "List of 20 tasks:", "", "###"]             # prompt.txt:14, GI:82,88
    blocks = "\n".join(lines[15:])
    block = r"###\n(\d)\. Instruction: [^\n]+\n\1\. Input:\n[^\n]+\n"       # GI:88-90
    assert re.fullmatch(rf"(?:{block}){{5}}###\n6\. Instruction:", blocks)  # GI:91-92
    assert [int(n) for n in re.findall(r"(\d)\. Instruction:", blocks)] == [1, 2, 3, 4, 5, 6]


def test_output_requirement_adds_only_item_nine():
    plain, with_nine = meta_prompt_header(), meta_prompt_header(output_requirement=True)
    assert len(re.findall(r"(?m)^\d\. ", plain)) == 8
    assert len(re.findall(r"(?m)^\d\. ", with_nine)) == 9
    assert with_nine.replace(re.search(r"(?m)^9\. [^\n]*\n", with_nine).group(0), "") == plain
    # the same draw of seeds with or without it
    a = build_meta_prompt(SEEDS, random.Random(3))
    b = build_meta_prompt(SEEDS, random.Random(3), output_requirement=True)
    assert a[len(plain):] == b[len(with_nine):]


JUDGE_SKELETON = re.compile(
    r"[^\n]* Instruction: (?P<task>[^\n]*) Response: (?P<response>[^\n]*)\.\n"   # :112 line 1
    r"(?P<criteria>[^\n]*\b1\b[^\n]*\b10\b[^\n]*)'<score>\|\|<explanation>'"      # criteria, format
    r"[^\n]*: ")                                                                 # cue, trailing space


def test_reference_judge_prompt_has_the_release_skeleton():
    for kind in ASSESSMENT_KINDS:
        prompt = build_assessment_prompt(kind, "Add the numbers.", "2 and 3", "5", layout="reference")
        match = JUDGE_SKELETON.fullmatch(prompt)
        assert match, prompt
        assert match["task"] == "Add the numbers. 2 and 3" and match["response"] == "5"
        no_input = build_assessment_prompt(kind, "Name a prime.", "", "7", layout="reference")
        assert JUDGE_SKELETON.fullmatch(no_input)["task"] == "Name a prime."
        # the engine layout keeps its own lines (the toy world's base model reads it)
        assert not JUDGE_SKELETON.fullmatch(build_assessment_prompt(kind, "Add.", "2", "5"))


def test_reference_judge_cue_is_followed_by_the_score():
    """Cue last: a judge continuing with "9||..." is read as 9 (the release's parse, :166-194)."""
    prompt = build_assessment_prompt("quality", "Add.", "2 and 3", "5", layout="reference")
    assert prompt.endswith(": ") and prompt.rindex("'<score>||<explanation>'") < prompt.rindex(":")
    assert parse_score("9||Correct and short.") == 9
