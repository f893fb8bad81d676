
#compdef a2v

_a2v_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _A2V_COMPLETE=complete_zsh a2v)
}

compdef _a2v_completion a2v

