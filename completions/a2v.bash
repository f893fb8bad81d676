
_a2v_completion() {
    local IFS=$'
'
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \
                   COMP_CWORD=$COMP_CWORD \
                   _A2V_COMPLETE=complete_bash $1 ) )
    return 0
}

complete -o default -F _a2v_completion a2v

