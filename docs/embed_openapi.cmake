# docs/embed_openapi.cmake — writes OUT, a C file holding IN (docs/openapi.yaml)
# as bytes, for GET /api/schema/ (gateway/openapi.h):
#   const char gateway_openapi_yaml[] = { 0x6f, ..., 0x00 };
#   const size_t gateway_openapi_yaml_size = <bytes, without the final NUL>;
# Run by the add_custom_command in CMakeLists.txt:
#   cmake -DIN=docs/openapi.yaml -DOUT=build/openapi_data.c -P docs/embed_openapi.cmake
file (READ ${IN} hex HEX)
string (LENGTH "${hex}" hex_length)
math (EXPR size "${hex_length} / 2")
# "6f70" -> "0x6f,0x70," with a line break every 16 bytes (CMake's regex
# has no {n}: the 16-byte pattern is spelled out)
string (REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string (REPEAT "0x[0-9a-f][0-9a-f]," 16 line)
string (REGEX REPLACE "(${line})" "\\1\n    " bytes "${bytes}")
file (WRITE ${OUT}
    "/* Generated from docs/openapi.yaml by docs/embed_openapi.cmake. */\n"
    "#include \"openapi.h\"\n\n"
    "const char gateway_openapi_yaml[] = {\n    ${bytes}0x00\n};\n"
    "const size_t gateway_openapi_yaml_size = ${size};\n")
