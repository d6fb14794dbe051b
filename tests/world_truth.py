"""An answer's truth worked out from the text alone, independent of engine.world's checker:
the tests compare the world's code against it."""
import re

from engine.world.families import FAMILIES

CODE_OF = dict(FAMILIES["code"].code_of)   # the table is data; the arithmetic is done here


def truth(instruction: str, response: str) -> bool:
    """Right or wrong for a factor or code question in either phrasing."""
    target = int(re.search(r"(\d+)[.?]?$", instruction.strip())[1])
    if "product" in instruction or "factor" in instruction:
        pair = re.fullmatch(r"Pair (\d+) and (\d+)\.?", response.strip())
        return bool(pair) and all(2 <= int(x) <= 19 for x in pair.groups()) \
            and int(pair[1]) * int(pair[2]) == target
    word = re.fullmatch(r"Word ([a-z]+)\.?", response.strip())
    return bool(word) and CODE_OF.get(word[1]) == target
