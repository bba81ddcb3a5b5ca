# Idle shells (there are none on the appliance) end after 5 minutes.
TMOUT=300
readonly TMOUT
export TMOUT
