module chatsim

go 1.25
