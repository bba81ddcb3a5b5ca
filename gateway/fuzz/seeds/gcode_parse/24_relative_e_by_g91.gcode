; Hand-written two-layer printlet: the base every attack fixture is derived from.
G21 ; millimetres
G90 ; absolute XYZ
M82 ; absolute E
M140 S40
M104 S190
G28 ; home
G1 Z5 F3000
M190 S40
M109 S190
G92 E0
M107
; layer 1
G1 Z0.3 F3000
G1 X95 Y95 F7200
G1 F900
G1 X105 Y95 E0.5
G1 X105 Y105 E1
G1 X95 Y105 E1.5
G1 X95 Y95 E2
G1 E0 F2100 ; retract
G92 E0
; layer 2
G1 Z0.5 F3000
G91
G1 E2 F2100 ; unretract, relative
G90
M106 S128
G1 X105 Y95 E2.5 F900
G1 X105 Y105 E3
G1 X95 Y105 E3.5
G1 X95 Y95 E4
G1 E2 F2100 ; retract
; end
M104 S0
M140 S0
M107
G1 Z10 F600
G28 X0 Y0
M84
