# Position tests: non-ASCII and astral characters before the cursor make UTF-16 columns differ.
greeting = "héllo wörld"
label = "😋 ünïcödé 🎉"; value = fo
après = "🎉"
