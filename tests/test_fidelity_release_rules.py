"""Under `reference`, parsing, prompt filtering, response filtering and pair filtering take
exactly the decisions the I-SHEEP release takes.

Every expected decision below was written by reading the release's rules (GitHub
multimodal-art-projection/I-SHEEP); each case names the file and line it follows:
  GI   seed_ppl/generate_instruction.py            (parser and prompt filters)
  S21  seed_ppl/utils/step_2_1_filter_output_and_instruction_to_sft.py   (rules on pairs)
  GO   seed_ppl/generate_output.py                 (the answer stop strings)
Engine defaults keep their own tests (test_selfalign_synthesis, test_selfalign_response_filters).
"""
import pytest

from engine.selfalign.pair_filters import filter_pair
from engine.selfalign.response_filters import clean_response, filter_response
from engine.selfalign.synthesis import ParsedTask, filter_prompt, parse_generated_tasks

REFERENCE_PARSE = dict(num_prompt_tasks=5, drop_last="always", split="reference")
SORT = "Sort the numbers in ascending order."
PERU = "Name the capital city of Peru."

# ---- parsing: (name, continuation after "6. Instruction:", finish reason,
#                expected [(number, instruction, input)], release line) --------------------
PARSE_CASES = [
    ("stop_at_17_keeps_all_complete",
     f" {SORT}\n6. Input:\n4, 1, 3\n###\n7. Instruction: {PERU}\n7. Input:\n<noinput>\n###\n", "stop",
     [(6, SORT, "4, 1, 3"), (7, PERU, "")], "GI:110-112 the chunk after the last ### is dropped"),
    ("eos_after_a_complete_item_loses_it",
     f" {SORT}\n6. Input:\n4, 1, 3\n###\n7. Instruction: {PERU}\n7. Input:\n<noinput>", "stop",
     [(6, SORT, "4, 1, 3")], "GI:112 the last chunk is dropped whatever the stop reason"),
    ("length_cut_item_dropped",
     f" {SORT}\n6. Input:\n4, 1, 3\n###\n7. Instruction: Write a haiku ab", "length",
     [(6, SORT, "4, 1, 3")], "GI:112"),
    ("skipped_number_loses_every_later_item",
     f" {SORT}\n6. Input:\n4, 1, 3\n###\n8. Instruction: {PERU}\n8. Input:\n<noinput>\n###\n"
     f"9. Instruction: Name a prime number.\n9. Input:\n<noinput>\n###\n", "stop",
     [(6, SORT, "4, 1, 3")], "GI:115-118 chunk k must carry number 6 + k"),
    ("missing_separator_leaves_next_item_in_the_input",
     f" {SORT}\n6. Input:\n4, 1, 3\n7. Instruction: {PERU}\n7. Input:\n<noinput>\n###\n", "stop",
     [(6, SORT, f"4, 1, 3\n7. Instruction: {PERU}\n7. Input:\n<noinput>")],
     "GI:110,116 only ### separates items"),
    ("output_field_stays_in_the_input",
     " Summarize the paragraph in one sentence.\n6. Input:\nThe sun is a star.\n6. Output:\n"
     "A star.\n###\n", "stop",
     [(6, "Summarize the paragraph in one sentence.", "The sun is a star.\n6. Output:\nA star.")],
     "GI:116 the split knows only Instruction and Input"),
    ("output_before_input_stays_in_the_instruction",
     " Summarize the paragraph in one sentence.\n6. Output:\nshort\n6. Input:\nThe sun is a star."
     "\n###\n", "stop",
     [(6, "Summarize the paragraph in one sentence.\n6. Output:\nshort", "The sun is a star.")],
     "GI:116,120"),
    ("unanchored_number_matches_inside_16",
     " Name a fruit that is red.\n6. Input:\n<noinput>\n16. Instruction: Name a vegetable.\n###\n",
     "stop", [], "GI:116-118 '6. Instruction:' inside '16. Instruction:' makes 7 pieces"),
    ("repeated_input_marker_dropped",
     f" {SORT}\n6. Input:\n4, 1, 3\n6. Input:\n9, 8\n###\n", "stop", [], "GI:117-118"),
    ("noinput_any_case_becomes_empty",
     " Name the largest planet in the solar system.\n6. Input:\n<NoInput>\n###\n", "stop",
     [(6, "Name the largest planet in the solar system.", "")], "GI:122"),
    ("noinput_with_a_period_is_kept_as_text",
     " Name the largest planet in the solar system.\n6. Input:\n<noinput>.\n###\n", "stop",
     [(6, "Name the largest planet in the solar system.", "<noinput>.")], "GI:122 exact match only"),
    ("chatter_before_the_marker_is_ignored",
     f" {SORT}\n6. Input:\n4, 1, 3\n###\nHere is one more task.\n7. Instruction: {PERU}\n7. Input:\n"
     "<noinput>\n###\n", "stop", [(6, SORT, "4, 1, 3"), (7, PERU, "")], "GI:116,120"),
    ("empty_continuation", "", "stop", [], "GI:109-112"),
]


@pytest.mark.parametrize("name, text, finish, expected, cite", PARSE_CASES,
                         ids=[c[0] for c in PARSE_CASES])
def test_reference_parse_takes_the_release_decisions(name, text, finish, expected, cite):
    tasks = parse_generated_tasks(text, finish_reason=finish, **REFERENCE_PARSE)
    assert [(t.number, t.instruction, t.input) for t in tasks] == expected, cite


# ---- prompt filters: (name, instruction, input, expected reason, release line) -----------
WORDS_150 = " ".join(["word"] * 149 + ["now."])
PROMPT_CASES = [
    ("keep_plain", SORT, "4, 1, 3", None, "GI:124-163"),
    ("three_words", "Name three colors.", "", "length", "GI:125 <= 3 words"),
    ("four_words", "Name three primary colors.", "", None, "GI:125"),
    ("150_words", WORDS_150, "", None, "GI:125 > 150"),
    ("151_words", "more " + WORDS_150, "", "length", "GI:125 > 150"),
    ("empty_instruction", "", "", "length", "GI:125"),
    ("blacklist_instruction", "Describe the image in two sentences.", "", "blacklist", "GI:148"),
    ("blacklist_plot", "Summarize the plot of Hamlet briefly.", "", "blacklist", "GI:140,148"),
    ("blacklist_input_only", "Summarize the text below in one sentence.",
     "The file was lost in the move.", "blacklist", "GI:150"),
    ("blacklist_any_case_two_words", "Tell me how to Go To the nearest station.", "", "blacklist",
     "GI:141,167-168 IGNORECASE"),
    ("blacklist_whole_word_only", "Explain how a mapping between two sets works.", "", None,
     "GI:168 \\b...\\b"),
    ("leading_quote", '"Hello" is a greeting; translate it into Spanish.', "",
     "starts_with_punctuation", "GI:153"),
    ("leading_digit", "3 reasons why exercise is healthy: list them.", "", None, "GI:153,156"),
    ("leading_non_ascii", "¿Cómo estás? Translate this into English.", "", "starts_with_non_ascii",
     "GI:156 (¿ is not ASCII punctuation)"),
    ("noinput_in_input", "Name the tallest mountain on Earth.", "noinput", "noinput", "GI:97"),
    ("no_input_in_input", "Name the tallest mountain on Earth.", "There is No Input here.",
     "noinput", "GI:97 input.lower()"),
    ("noinput_in_instruction", "Answer the question (noinput needed) about planets.", "",
     "noinput", "GI:97"),
    ("NoInput_in_instruction_is_case_sensitive", "Explain what NoInput means in a web form.", "",
     None, "GI:97 the instruction is not lowercased"),
    ("input_marker_in_instruction", "Rewrite the sentence. Input: The cat sat.", "",
     "leaked_marker", "GI:100"),
    ("output_marker_in_instruction_kept", "Convert the temperature and label it Output: please.",
     "", None, "GI:100 the instruction pattern has no Output"),
    ("output_marker_in_input", "Summarize the paragraph in one sentence.",
     "The sun is a star.\n6. Output:\nA star.", "leaked_marker", "GI:100"),
    ("marker_at_field_start_kept", "Input: list three fruits that are yellow.", "", None,
     "GI:100 needs a character and whitespace before the marker"),
    ("marker_without_whitespace_kept", "Rewrite the sentence.Input: The cat sat.", "", None,
     "GI:100 \\s+"),
    ("url", "Summarize the article at https://example.com in two sentences.", "", "url",
     "GI:103"),
    ("www_kept", "Describe what the site www.example.org is used for.", "", None,
     "GI:103 only http(s):"),
    ("write_a_program_kept", "Write a program that prints the first ten prime numbers.", "",
     None, "GI:107-163 has no 'Write a program' rule"),
    ("placeholder_kept_until_pairs", "Write a birthday message for <name> from the team.", "",
     None, "GI:95-105; S21:51 runs on the pair"),
    ("none_input_kept_until_pairs", "Name the largest ocean on Earth.", "None", None,
     "GI:97; S21:51 runs on the pair"),
    ("input_in_instruction_kept_until_pairs", "Translate 'good morning' into French.",
     "good morning", None, "GI:95-105; S21:86 runs on the pair"),
    ("length_before_url", "See https://x.io", "", "length", "GI:125 before GI:103"),
]


@pytest.mark.parametrize("name, instruction, task_input, expected, cite", PROMPT_CASES,
                         ids=[c[0] for c in PROMPT_CASES])
def test_reference_prompt_filter_takes_the_release_decisions(name, instruction, task_input,
                                                             expected, cite):
    assert filter_prompt(ParsedTask(instruction, task_input), rules="reference") == expected, cite


# ---- response filters: (name, the answer as generated, expected reason, release line) ----
WORDS = "word " * 20                       # 100 characters
RESPONSE_CASES = [
    ("keep_plain", "The capital of France is Paris.", None, "S21:36-48"),
    ("role_line_human", "Paris is the capital.\nHuman: Thanks", "role_line", "S21:38"),
    ("role_line_bare_assistant", "Here you go.\nassistant\nMore text", "role_line", "S21:38"),
    ("role_label_mid_line_kept", "The user: a person who uses it.", None, "S21:38 needs \\n"),
    ("output_line", "Step one done.\nOutput: 42", "role_line", "S21:38"),
    ("question_line", "Sure.\nQuestion: what is 2+2", "role_line", "S21:38"),
    ("questions_label_kept", "Here are notes.\nQuestions: see the list", None,
     "S21:38 [:\\n] right after the word"),
    ("leading_newline_role_line", "\nUser: hi", "role_line", "S21:38 no stripping"),
    ("answer_choices", "Answer Choices: yes, no", "answer_choices", "S21:41"),
    ("noinput_leak", "The input is <noinput> so I will guess.", "noinput_leak", "S21:41"),
    ("no_input_any_case", "No input was given, so here is a poem.", "noinput_leak", "S21:41 (?i)"),
    ("can_you_line", "Sure thing.\nCan you tell me more", "can_you", "S21:41"),
    ("can_you_mid_line_kept", "The phrase can you is a polite request form.", None,
     "S21:41 needs \\n"),
    ("do_you", "I wonder, do you like tea", "do_you", "S21:41"),
    ("Do_you_any_case", "Do you want more examples", "do_you", "S21:41 (?i)"),
    ("do_you_then_mark_kept", "Nobody knows, do you?", None,
     "S21:41 'do you ' needs a space and a character"),
    ("question_paragraph", "Paris is the capital.\n\nWhy is it famous? Its art.",
     "question_paragraph", "S21:41"),
    ("question_in_first_paragraph_kept", "Why is the sky blue? Because of scattering.", None,
     "S21:41 needs \\n\\n before"),
    ("question_mark_at_100", "Notes follow.\n\n" + WORDS[:-1] + "x?", "question_paragraph",
     "S21:41 .{1,100}"),
    ("question_mark_at_101_kept", "Notes follow.\n\n" + WORDS + "x?", None, "S21:41 .{1,100}"),
    ("lettered_list", "Options:\na. red\nb. blue", "enumeration", "S21:43"),
    ("parenthesised_letter", "Pick (b) for the safest choice.", "enumeration", "S21:43"),
    ("eg", "Use fruit, e.g. apples.", "enumeration", "S21:43 \\b[A-Ea-e]\\."),
    ("vitamin_c", "Oranges are rich in vitamin C.", "enumeration", "S21:43"),
    ("grade_f_kept", "He got an F. Then he studied.", None, "S21:43 A-E only"),
    ("letter_f_parenthesised_kept", "See note (f) below.", None, "S21:43 A-E only"),
    ("word_ending_in_a_kept", "That is a good idea.", None, "S21:43 needs a word boundary"),
    ("chinese", "The answer is 北京.", "cjk", "S21:44"),
    ("japanese_kana_kept", "Thank you is ありがとう in Japanese.", None, "S21:44 \\u4e00-\\u9fff only"),
    ("empty", "", "empty", "S21:16-25"),
    ("whitespace_only_kept", "   ", None, "S21:20 compares with ''"),
    ("answer_prefix_removed_first", "答案：42", None, "S21:55-64 before S21:44"),
    ("answer_prefix_only_is_empty", "答案：", "empty", "S21:57,20"),
    ("repeated_answer_prefix", "答案：答案: 北京", "cjk", "S21:57 (...)+"),
    ("cut_at_stop_string", "Paris.<|im_end|>\n<|im_start|>user\nWhat about Spain?", None,
     "GO:162 vLLM ends the text at the stop"),
]


@pytest.mark.parametrize("name, response, expected, cite", RESPONSE_CASES,
                         ids=[c[0] for c in RESPONSE_CASES])
def test_reference_response_filter_takes_the_release_decisions(name, response, expected, cite):
    # the release's output rules do not read the prompt: any prompt gives the same decision
    for prompt in ("Name the capital of France.", "Ask me questions in Chinese with options."):
        assert filter_response(prompt, response, rules="reference") == expected, cite
        # what the loop stores is the cleaned text; filtering it again decides the same
        assert filter_response(prompt, clean_response(response, "reference"),
                               rules="reference") == expected, cite


# ---- pair filters: (name, instruction, input, expected reason, release line) -------------
PAIR_CASES = [
    ("keep_plain", SORT, "4, 1, 3", None, "S21:66-91"),
    ("none_input", "Name the largest ocean on Earth.", "None", "noinput_pattern", "S21:51,73"),
    ("nonetheless_in_instruction", "Explain why the plan worked nonetheless.", "",
     "noinput_pattern", "S21:51 'none' anywhere"),
    ("placeholder_in_instruction", "Write a birthday message for <name> from the team.", "",
     "noinput_pattern", "S21:51 <.{1,20}>"),
    ("angle_brackets_close_together", "Solve the inequality.", "x < 3 and y > 5",
     "noinput_pattern", "S21:51"),
    ("angle_brackets_far_apart_kept", "Solve the inequality.",
     "x < 3 while the other value y is bigger, so y > 5", None, "S21:51 at most 20 between"),
    ("empty_angle_brackets_kept", "Compare the two operators.", "<> and !=", None,
     "S21:51 .{1,20} needs a character"),
    ("no_input_any_case", "Name the tallest mountain.", "No Input", "noinput_pattern",
     "S21:51 (?i)"),
    ("noinput_in_instruction", "Answer this noinput question about Mars.", "", "noinput_pattern",
     "S21:51,73"),
    ("input_in_instruction", "Translate 'good morning' into French.", "good morning",
     "input_in_instruction", "S21:86"),
    ("blank_input_kept", "Name a primary color.", " ", None, "S21:86 input.strip() != ''"),
    ("input_not_in_instruction_kept", "Translate the phrase into French.", "good morning", None,
     "S21:86"),
]


@pytest.mark.parametrize("name, instruction, task_input, expected, cite", PAIR_CASES,
                         ids=[c[0] for c in PAIR_CASES])
def test_reference_pair_filter_takes_the_release_decisions(name, instruction, task_input,
                                                           expected, cite):
    assert filter_pair(instruction, task_input, "Any answer.", rules="reference") == expected, cite
    assert filter_pair(instruction, task_input, "Any answer.", rules="engine") is None


def test_enough_hand_written_cases_and_every_rule_keeps_and_drops():
    cases = len(PARSE_CASES) + len(PROMPT_CASES) + len(RESPONSE_CASES) + len(PAIR_CASES)
    assert cases >= 60
    dropped = ({c[3] for c in PROMPT_CASES} | {c[2] for c in RESPONSE_CASES}
               | {c[3] for c in PAIR_CASES})
    from engine.selfalign.response_filters import REFERENCE_RESPONSE_FILTERS
    from engine.selfalign.synthesis import REFERENCE_PROMPT_FILTERS
    rules = ({n for n, _ in REFERENCE_PROMPT_FILTERS} | {n for n, _ in REFERENCE_RESPONSE_FILTERS}
             | {"noinput_pattern", "input_in_instruction"})
    assert rules <= dropped                 # every rule has a drop case
    assert None in dropped                  # and cases that every rule keeps


def test_release_pipeline_on_one_continuation():
    """Parse then filter, both reference, over one continuation: the decisions per item."""
    text = (f" {SORT}\n6. Input:\n4, 1, 3\n###\n"
            "7. Instruction: Summarize the plot of Hamlet briefly.\n7. Input:\n<noinput>\n###\n"
            "8. Instruction: Give a synonym for happy.\n8. Input:\n<noinput>\n8. Output:\nglad\n###\n"
            "9. Instruction: Write a program that prints the first ten prime numbers.\n9. Input:\n"
            "<noinput>\n###\n10. Instruction: Name a colour of the sky.\n10. Input:\n<noinput>")
    tasks = parse_generated_tasks(text, finish_reason="stop", **REFERENCE_PARSE)
    decisions = {t.number: filter_prompt(t, rules="reference") for t in tasks}
    # 10 is the last chunk (GI:112); 7 hits "plot" (GI:140); 8's Output sits in its input,
    # which is then "<noinput>\n8. Output:\nglad", not exactly "<noinput>" (GI:122), so the
    # noinput rule (GI:97) fires before the marker rule (GI:100); 9: no program rule
    assert decisions == {6: None, 7: "blacklist", 8: "noinput", 9: None}


def test_engine_defaults_still_differ_where_the_doc_says():
    """The switches matter: the same inputs under the engine defaults."""
    program = ParsedTask("Write a program that prints the first ten prime numbers.", "")
    assert filter_prompt(program) == "write_a_program"
    assert filter_prompt(ParsedTask("Name the largest ocean on Earth.", "None")) == "noinput"
    assert filter_response("Name a fruit.", "Use fruit, e.g. apples.") is None
    text = f" {SORT}\n6. Input:\n4, 1, 3\n###\n7. Instruction: {PERU}\n7. Input:\n<noinput>"
    assert [t.number for t in parse_generated_tasks(text)] == [6, 7]
    with_output = (" Give a synonym for happy.\n6. Input:\n<noinput>\n6. Output:\nglad\n###\n"
                   f"7. Instruction: {PERU}\n7. Input:\n<noinput>\n###\n")
    assert [t.number for t in parse_generated_tasks(with_output)] == [6, 7]
    assert [t.number for t in parse_generated_tasks(with_output, drop_output_items=True)] == [7]


def test_bad_switch_values_are_one_clear_error():
    with pytest.raises(ValueError, match="drop_last"):
        parse_generated_tasks("", drop_last="sometimes")
    with pytest.raises(ValueError, match="split"):
        parse_generated_tasks("", split="alpaca")
    with pytest.raises(ValueError, match="prompt rules"):
        filter_prompt(ParsedTask("Name three primary colors.", ""), rules="alpaca")
    with pytest.raises(ValueError, match="response rules"):
        filter_response("p", "r", rules="alpaca")
    with pytest.raises(ValueError, match="pair rules"):
        filter_pair("i", "", "r", rules="none")
